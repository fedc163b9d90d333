using Hcsc.Core.Options;
using Hcsc.Core.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Clustering;

/// <summary>
/// The concentration ("density") φ of each cluster of one level (docs/method.md §2, step 4), used as the
/// prototype's temperature. From the squared distances D_i of the members i of cluster c to their raw
/// centre, with n_c members:
/// <list type="number">
/// <item>φ(c) = mean_i √D_i / ln(n_c + 10) when n_c &gt; 1;</item>
/// <item>clusters with n_c ≤ 1 get the largest φ of the level (all φ = 1 when no cluster has two members);</item>
/// <item>every φ is clipped to [P_low, P_high], the percentiles of the φ of the level with linear
/// interpolation between order statistics (numpy's default), by default the 10th and 90th;</item>
/// <item>rescale φ ← τ · φ / mean(φ) (φ = τ everywhere when the mean is 0);</item>
/// <item>φ is floored at 1e-6 · τ so it stays a valid temperature when all members of a cluster coincide with its centre.</item>
/// </list>
/// </summary>
public static class ConcentrationEstimator
{
    /// <summary>
    /// Computes φ for the k clusters of one level.
    /// </summary>
    /// <param name="squaredDistances">D_i, squared L2 distance of each member to its raw centre, <c>[n]</c>, floating point, ≥ 0.</param>
    /// <param name="assignments">Cluster of each member, <c>[n]</c> int64 in [0, k), same device.</param>
    /// <param name="clusterCount">k.</param>
    /// <param name="temperature">τ &gt; 0, the mean of the returned φ.</param>
    /// <param name="lowPercentile">Lower clip percentile in [0, 100] (<see cref="ClusteringOptions.ConcentrationLowPercentile"/>). Default 10.</param>
    /// <param name="highPercentile">Upper clip percentile in [low, 100] (<see cref="ClusteringOptions.ConcentrationHighPercentile"/>). Default 90.</param>
    /// <returns>φ, <c>[k]</c> float32 on the inputs' device.</returns>
    /// <exception cref="ArgumentException">Shapes, dtypes, devices or settings are invalid.</exception>
    public static Tensor Estimate(Tensor squaredDistances, Tensor assignments, long clusterCount, double temperature, double lowPercentile = ClusteringOptions.DefaultConcentrationLowPercentile, double highPercentile = ClusteringOptions.DefaultConcentrationHighPercentile) =>
        Estimate(squaredDistances, assignments, clusterCount, temperature, lowPercentile, highPercentile, null);

    /// <summary>
    /// <see cref="Estimate(Tensor, Tensor, long, double, double, double)"/> over the members of every rank of
    /// <paramref name="shard"/> (each rank passing its own members): the per-cluster sums of √D and the sizes are summed over
    /// the ranks, so the rest runs on the same k-vectors everywhere. Collective when the shard is distributed.
    /// </summary>
    internal static Tensor Estimate(Tensor squaredDistances, Tensor assignments, long clusterCount, double temperature, double lowPercentile, double highPercentile, PointShard? shard)
    {
        ArgumentNullException.ThrowIfNull(squaredDistances);
        ArgumentNullException.ThrowIfNull(assignments);
        if (squaredDistances.dim() != 1 || !is_floating_point(squaredDistances) || assignments.dim() != 1
            || assignments.dtype != ScalarType.Int64 || assignments.shape[0] != squaredDistances.shape[0] || squaredDistances.shape[0] == 0)
        {
            throw new ArgumentException(
                $"Expected squared distances [n] (floating point) and assignments [n] (int64) with the same n > 0; got {squaredDistances.Describe()} and {assignments.Describe()}.");
        }

        if (!DeviceEquality.SameDevice(squaredDistances, assignments))
        {
            throw new ArgumentException($"Squared distances and assignments must be on one device; got {squaredDistances.Describe()} and {assignments.Describe()}.");
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(clusterCount, 1);
        if (HcscOptionsValidator.TemperatureProblem(temperature) is { } temperatureProblem)
        {
            throw new ArgumentOutOfRangeException(nameof(temperature), temperature, temperatureProblem);
        }

        if (HcscOptionsValidator.ConcentrationPercentilesProblem(lowPercentile, highPercentile) is { } percentiles)
        {
            throw new ArgumentException(percentiles, nameof(lowPercentile));
        }

        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        // Explicit scalars, alive for every call that reads them (no implicitly converted temporaries).
        using var zero = 0.ToScalar();
        using var one = 1.ToScalar();
        using var unit = 1.0.ToScalar();
        using var ten = 10.ToScalar();
        using var tau = temperature.ToScalar();
        using var tiny = double.Epsilon.ToScalar();
        using var floor = (1e-6 * temperature).ToScalar();
        var device = squaredDistances.device;
        var root = squaredDistances.detach().to(ScalarType.Float64).clamp_min(zero).sqrt();                     // [n]
        var sums = zeros(clusterCount, ScalarType.Float64, device).index_add_(0, assignments, root, unit);      // [k]
        var counts = bincount(assignments, minlength: clusterCount).to(ScalarType.Float64);                      // [k]
        shard?.SumInPlace(sums);
        shard?.SumInPlace(counts);
        var several = counts.gt(one);                                                                             // [k]
        Tensor phi;
        if (!several.any().item<bool>())
        {
            phi = ones(clusterCount, ScalarType.Float64, device);
        }
        else
        {
            phi = sums / counts.clamp_min(one) / counts.add(ten, one).log();
            var largest = where(several, phi, double.NegativeInfinity).max();
            phi = where(several, phi, largest);
        }

        var low = phi.quantile(lowPercentile / 100.0);
        var high = phi.quantile(highPercentile / 100.0);
        phi = phi.clamp(low, high);
        var mean = phi.mean();
        phi = where(mean.gt(zero), phi.mul(tau) / mean.clamp_min(tiny), full_like(phi, tau));
        return phi.clamp_min(floor).to(ScalarType.Float32).MoveToOuterDisposeScope();
    }
}
