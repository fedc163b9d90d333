using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Clustering;

/// <summary>
/// Removes empty clusters after a centroid update (docs/method.md §2, step 1): for each empty cluster e, a cluster j is
/// drawn with probability proportional to its size among clusters with more than one member; the
/// centre of j is copied into e and the two copies are perturbed symmetrically,
/// <c>c_e = c_j ⊙ (1 + ε·s)</c>, <c>c_j = c_j ⊙ (1 − ε·s)</c> with <c>s = (+1, −1, +1, …)</c> and
/// ε = 1/1024; j's members are then counted half for each, so a later empty cluster sees the split.
/// </summary>
internal static class EmptyClusterSplitter
{
    /// <summary>Relative perturbation ε of the two copies.</summary>
    public const double Epsilon = 1.0 / 1024;

    /// <summary>
    /// Splits clusters in place so that no centroid is left without members.
    /// </summary>
    /// <param name="centroids">[k, d], updated in place.</param>
    /// <param name="counts">Member counts per cluster, on the host; updated.</param>
    /// <param name="generator">CPU generator for the draws.</param>
    /// <returns>The number of empty clusters that were split.</returns>
    public static int Split(Tensor centroids, long[] counts, Generator generator)
    {
        int empty = counts.Count(c => c == 0);
        if (empty == 0)
        {
            return 0;
        }

        using var scope = NewDisposeScope();
        long d = centroids.shape[1];
        // Explicit scalars, alive for every call that reads them (no implicitly converted temporaries).
        using var one = 1.ToScalar();
        using var two = 2.ToScalar();
        using var width = d.ToScalar();
        using var minusOne = (-1.0).ToScalar();
        using var epsilon = Epsilon.ToScalar();
        var signs = ones(d, centroids.dtype, centroids.device);
        signs.index_fill_(0, arange(one, width, two, device: centroids.device), minusOne);
        var up = signs.mul(epsilon).add(one, one);              // [d]: 1 + ε·s
        var down = signs.mul(epsilon).negative().add(one, one); // [d]: 1 − ε·s
        var uniforms = rand(empty, ScalarType.Float64, generator: generator).data<double>().ToArray();
        int drawn = 0;
        for (int e = 0; e < counts.Length; e++)
        {
            if (counts[e] != 0)
            {
                continue;
            }

            int j = Draw(counts, uniforms[drawn++]);
            var source = centroids[j].clone();
            centroids[e].copy_(source * up);
            centroids[j].copy_(source * down);
            counts[e] = counts[j] / 2;
            counts[j] -= counts[e];
        }

        return empty;
    }

    /// <summary>Inverse-CDF draw over the clusters with more than one member, weight = size.</summary>
    private static int Draw(long[] counts, double uniform)
    {
        double total = 0;
        foreach (long c in counts)
        {
            total += c > 1 ? c : 0;
        }

        if (total == 0)
        {
            throw new InvalidOperationException("Cannot split an empty cluster: no cluster has more than one member (fewer points than clusters).");
        }

        double target = uniform * total, running = 0;
        int last = -1;
        for (int j = 0; j < counts.Length; j++)
        {
            if (counts[j] <= 1)
            {
                continue;
            }

            last = j;
            running += counts[j];
            if (target < running)
            {
                return j;
            }
        }

        return last;
    }
}
