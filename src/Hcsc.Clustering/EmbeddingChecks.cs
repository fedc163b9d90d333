using Hcsc.Core.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Clustering;

/// <summary>Input checks shared by the clustering entry points; each throws before any work is done.</summary>
internal static class EmbeddingChecks
{
    /// <summary>Checks that <paramref name="points"/> is a finite 2-D floating tensor [N, d] with N ≥ k and d ≥ 1.</summary>
    public static void RequirePoints(Tensor points, long k, string parameterName)
    {
        ArgumentNullException.ThrowIfNull(points, parameterName);
        if (points.dim() != 2)
        {
            throw new ArgumentException($"The points must be a 2-D tensor [N, d]; got {points.Describe()}.", parameterName);
        }

        if (!is_floating_point(points))
        {
            throw new ArgumentException($"The points must be floating point (float16, bfloat16, float32 or float64); got {points.Describe()}.", parameterName);
        }

        long n = points.shape[0], d = points.shape[1];
        if (d == 0)
        {
            throw new ArgumentException($"The points have no features (d = 0); got {points.Describe()}.", parameterName);
        }

        if (n < k)
        {
            throw new ArgumentException($"k-means with k = {k} needs at least {k} points; got N = {n} ({points.Describe()}).", parameterName);
        }

        using var scope = NewDisposeScope();
        var badRows = points.isfinite().all(1).logical_not();
        long bad = badRows.sum().item<long>();
        if (bad > 0)
        {
            long first = badRows.nonzero()[0, 0].item<long>();
            throw new ArgumentException(
                $"{bad} of {n} rows of the points contain NaN or infinite values; the first is row {first}. Remove or repair them before clustering.",
                parameterName);
        }
    }
}
