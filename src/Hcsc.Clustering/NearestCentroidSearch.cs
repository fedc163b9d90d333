using Hcsc.Core.Options;
using Hcsc.Core.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Clustering;

/// <summary>
/// Exact nearest-centroid search under squared L2 distance, computed in chunks of rows so the
/// working memory stays bounded: for a chunk X_b, <c>D = ‖c‖² − 2·X_b·Cᵀ</c> (one GEMM, <c>[b, k]</c>),
/// the arg-min on the fly, then <c>‖x‖²</c> is added back to the minimum only. Everything stays on
/// the points' device; no value is copied to the host.
/// </summary>
public static class NearestCentroidSearch
{
    /// <summary>
    /// Assigns every point to its nearest centroid.
    /// </summary>
    /// <param name="points">Points <c>[N, d]</c>, floating point.</param>
    /// <param name="centroids">Centroids <c>[k, d]</c>, same dtype and device as <paramref name="points"/>.</param>
    /// <param name="chunkBytes">Bytes of one <c>[rows, k]</c> distance block (rows = chunkBytes / (k · element size), at least 1).</param>
    /// <returns>
    /// <c>Assignments</c> <c>[N]</c> int64, the index of the nearest centroid, and <c>SquaredDistances</c>
    /// <c>[N]</c> (dtype of the points), <c>min_c ‖x − c‖²</c> clamped at 0.
    /// </returns>
    /// <exception cref="ArgumentException">Shapes, dtypes or devices do not match.</exception>
    public static (Tensor Assignments, Tensor SquaredDistances) Assign(Tensor points, Tensor centroids, long chunkBytes = KMeansOptions.DefaultChunkBytes)
    {
        ArgumentNullException.ThrowIfNull(points);
        ArgumentNullException.ThrowIfNull(centroids);
        if (points.dim() != 2 || centroids.dim() != 2 || points.shape[1] != centroids.shape[1] || centroids.shape[0] == 0)
        {
            throw new ArgumentException($"Expected points [N, d] and centroids [k, d] with the same d and k > 0; got points {points.Describe()} and centroids {centroids.Describe()}.");
        }

        if (points.dtype != centroids.dtype || !is_floating_point(points))
        {
            throw new ArgumentException($"Points and centroids must share one floating-point dtype; got points {points.Describe()} and centroids {centroids.Describe()}.");
        }

        if (!DeviceEquality.SameDevice(points, centroids))
        {
            throw new ArgumentException($"Points and centroids must be on one device; got points {points.Describe()} and centroids {centroids.Describe()}.");
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(chunkBytes, 1);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        long n = points.shape[0];
        var assignments = empty(n, ScalarType.Int64, points.device);
        var distances = empty(n, points.dtype, points.device);
        using var two = 2.ToScalar(); // explicit and alive: no implicitly converted Scalar temporary
        var pointNorms = points.pow(two).sum(1);
        SearchInto(points, pointNorms, centroids, RowsPerChunk(chunkBytes, centroids.shape[0], points.element_size()), assignments, distances, null);
        return (assignments.MoveToOuterDisposeScope(), distances.MoveToOuterDisposeScope());
    }

    /// <summary>Rows per chunk for a <c>[rows, k]</c> block of <paramref name="elementSize"/>-byte values within <paramref name="chunkBytes"/>.</summary>
    internal static long RowsPerChunk(long chunkBytes, long k, long elementSize) => Math.Max(1, chunkBytes / (k * elementSize));

    /// <summary>
    /// Writes the nearest centroid (and optionally the per-group second-nearest squared distances) of every row of
    /// <paramref name="points"/> into the given outputs, chunk by chunk.
    /// </summary>
    /// <param name="points">[n, d].</param>
    /// <param name="pointNorms">‖x‖², [n].</param>
    /// <param name="centroids">[k, d].</param>
    /// <param name="rowsPerChunk">Rows per GEMM block.</param>
    /// <param name="assignments">Output [n] int64.</param>
    /// <param name="distances">Output [n], squared distance to the nearest centroid.</param>
    /// <param name="groupDistances">
    /// Optional output [n, t]: for each group g of centres (g covers indices [g·groupSize, (g+1)·groupSize)),
    /// the squared distance to the nearest centre of the group other than the assigned one (+∞ when none).
    /// With t = 1 and groupSize = k this is the second-nearest distance.
    /// </param>
    /// <param name="groupSize">Centres per group (the last group may be smaller).</param>
    internal static void SearchInto(Tensor points, Tensor pointNorms, Tensor centroids, long rowsPerChunk, Tensor assignments, Tensor distances, Tensor? groupDistances, long groupSize = 0)
    {
        long n = points.shape[0];
        long k = centroids.shape[0];
        using var outer = NewDisposeScope();
        // Explicit scalars, alive for every call that reads them (no implicitly converted temporaries).
        using var zero = 0.ToScalar();
        using var one = 1.ToScalar();
        using var two = 2.ToScalar();
        using var infinity = double.PositiveInfinity.ToScalar();
        var centroidNorms = centroids.pow(two).sum(1).unsqueeze(0); // [1, k]
        var centroidsT = centroids.t();                              // [d, k]
        for (long start = 0; start < n; start += rowsPerChunk)
        {
            using var scope = NewDisposeScope();
            long rows = Math.Min(rowsPerChunk, n - start);
            var block = addmm(centroidNorms, points.narrow(0, start, rows), centroidsT, beta: 1, alpha: -2); // [b, k]: ‖c‖² − 2x·c
            var (best, index) = block.min(1);                                                                 // [b], [b]
            var norms = pointNorms.narrow(0, start, rows);
            assignments.narrow(0, start, rows).copy_(index);
            distances.narrow(0, start, rows).copy_(best.add(norms, one).clamp_min_(zero));
            if (groupDistances is not null)
            {
                var target = groupDistances.narrow(0, start, rows); // [b, t]
                block.scatter_(1, index.unsqueeze(1), full(rows, 1, infinity, block.dtype, block.device));
                // Whole groups in one reduction over a [b, groups, groupSize] view; a last, smaller group apart.
                long whole = k / groupSize;
                if (whole > 0)
                {
                    target.narrow(1, 0, whole).copy_(block.narrow(1, 0, whole * groupSize).view(rows, whole, groupSize).amin(2));
                }

                if (whole < groupDistances.shape[1])
                {
                    target.select(1, whole).copy_(block.narrow(1, whole * groupSize, k - (whole * groupSize)).amin(1));
                }

                target.add_(norms.unsqueeze(1), one).clamp_min_(zero);
            }
        }
    }
}
