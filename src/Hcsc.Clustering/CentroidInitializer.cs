using Hcsc.Core.Options;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Clustering;

/// <summary>Starting centroids for one k-means restart.</summary>
internal static class CentroidInitializer
{
    /// <summary>Returns <c>[k, d]</c> starting centroids drawn from <paramref name="points"/> <c>[n, d]</c> with <paramref name="generator"/> (a CPU generator).</summary>
    public static Tensor Initialize(Tensor points, long k, KMeansInitialization method, Generator generator) => method switch
    {
        KMeansInitialization.RandomPoints => RandomPoints(points, k, generator),
        KMeansInitialization.KMeansPlusPlus => PlusPlus(points, k, generator),
        _ => throw new ArgumentOutOfRangeException(nameof(method), method, "Unknown initialisation."),
    };

    /// <summary>k distinct points chosen uniformly without replacement.</summary>
    private static Tensor RandomPoints(Tensor points, long k, Generator generator)
    {
        using var scope = NewDisposeScope();
        var chosen = RandomIndices(points.shape[0], k, generator).to(points.device);
        return points.index_select(0, chosen).MoveToOuterDisposeScope();
    }

    /// <summary>The indices (in [0, n), [k] int64 on the CPU) of the points <see cref="KMeansInitialization.RandomPoints"/> chooses: the first k of a random permutation.</summary>
    public static Tensor RandomIndices(long n, long k, Generator generator)
    {
        using var scope = NewDisposeScope();
        return randperm(n, generator: generator).narrow(0, 0, k).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// k-means++ (D² sampling): the first centre uniformly, then each next centre x_i with probability
    /// D(x_i)² / Σ_j D(x_j)², D being the distance to the nearest centre chosen so far. Sampling is an
    /// inverse-CDF look-up on the device (cumulative sum in float64 + searchsorted), so no value is
    /// copied to the host.
    /// </summary>
    private static Tensor PlusPlus(Tensor points, long k, Generator generator)
    {
        using var scope = NewDisposeScope();
        long n = points.shape[0];
        // Explicit scalars, alive for every call that reads them (no implicitly converted temporaries).
        using var zero = 0.ToScalar();
        using var one = 1.ToScalar();
        using var two = 2.ToScalar();
        using var count = n.ToScalar();
        using var lastIndex = (n - 1).ToScalar();
        var device = points.device;
        var centroids = empty(k, points.shape[1], points.dtype, device);
        var pointNorms = points.pow(two).sum(1);                                                  // [n]
        var uniforms = rand(k, ScalarType.Float64, generator: generator).to(device);              // [k]
        var first = uniforms.narrow(0, 0, 1).mul(count).floor().to(ScalarType.Int64).clamp_max(lastIndex); // [1]
        var centre = points.index_select(0, first);                                               // [1, d]
        centroids.narrow(0, 0, 1).copy_(centre);
        var nearest = pointNorms.sub(points.mv(centre[0]).mul(two)).add(centre.pow(two).sum(), one).clamp_min(zero); // [n]
        for (long j = 1; j < k; j++)
        {
            using var step = NewDisposeScope();
            var cdf = nearest.to(ScalarType.Float64).cumsum(0);                                   // [n]
            var target = uniforms.narrow(0, j, 1) * cdf[n - 1];                                    // [1]
            var index = searchsorted(cdf, target, right: true).clamp_max(lastIndex);              // [1]
            centre = points.index_select(0, index);                                               // [1, d]
            centroids.narrow(0, j, 1).copy_(centre);
            var distance = pointNorms.sub(points.mv(centre[0]).mul(two)).add(centre.pow(two).sum(), one).clamp_min(zero);
            nearest.copy_(minimum(nearest, distance));
        }

        return centroids.MoveToOuterDisposeScope();
    }
}
