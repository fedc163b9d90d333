using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Clustering;

/// <summary>
/// The assignment step of Lloyd's algorithm for one fixed set of training points, optionally with
/// Hamerly / Yinyang-style bounds so that points whose assignment provably cannot change skip the
/// distance GEMM.
/// <para>
/// The centres are split into t groups of about 50 consecutive indices (t ≤ 64; random start points
/// make the groups random sets). State per point i: a(i), its exact squared distance
/// D(i) = ‖x_i − c_{a(i)}‖² and, per group g, a lower bound l_g(i) on the Euclidean distance to every
/// centre of g other than a(i). After the centres move by δ_c, l_g(i) ← l_g(i) − max_{c ∈ g} δ_c
/// (with one group, max over c ≠ a(i): Hamerly). At the next step D(i) is recomputed exactly (an
/// O(N·d) gather, also needed for the objective), and with s(c) = ½ min_{c' ≠ c} ‖c − c'‖ a point keeps
/// its centre without a search when √D(i) &lt; max(min_g l_g(i), s(a(i))) − margin; all other points
/// get a full search (the chunked GEMM), which also refreshes their l_g. Every point is searched
/// until the assignment settles (<see cref="StartBoundsBelowChangedFraction"/>).
/// </para>
/// </summary>
internal sealed class BoundedAssigner : IDisposable
{
    /// <summary>
    /// Bounds start (at a full search) once the previous full search changed the assignment of fewer
    /// than this fraction of the points: while centres still move a lot almost no point could be
    /// skipped, so the extra pass the bounds need would be wasted.
    /// </summary>
    private const double StartBoundsBelowChangedFraction = 0.05;

    /// <summary>Yinyang-style groups: about this many centres share one lower bound (1 group = Hamerly).</summary>
    private const long CentresPerGroup = 50;

    /// <summary>At most this many groups, so the bounds take at most MaxGroups floats per point.</summary>
    private const long MaxGroups = 64;

    private readonly Tensor _points;      // [n, d]
    private readonly Tensor _pointNorms;  // [n]
    private readonly long _rowsPerChunk;
    private readonly long _exactRows;
    private readonly bool _useBounds;
    private readonly double _margin;
    private Tensor? _lower;               // [n, t], Euclidean lower bound to the nearest centre of each group other than a(i)
    private long _groups = 1;
    private long _groupSize;
    private int _steps;
    private double _changedFraction = 1.0;

    public BoundedAssigner(Tensor points, Tensor pointNorms, long rowsPerChunk, long chunkBytes, bool useBounds, double margin)
    {
        _points = points;
        _pointNorms = pointNorms;
        _rowsPerChunk = rowsPerChunk;
        _exactRows = Math.Max(1, chunkBytes / (points.shape[1] * points.element_size()));
        _useBounds = useBounds;
        _margin = margin;
        long n = points.shape[0];
        Assignments = zeros(n, ScalarType.Int64, points.device).DetachFromDisposeScope();
        Distances = zeros(n, points.dtype, points.device).DetachFromDisposeScope();
    }

    /// <summary>a(i), [n] int64.</summary>
    public Tensor Assignments { get; }

    /// <summary>Exact squared distance to the assigned centre, [n].</summary>
    public Tensor Distances { get; }

    /// <summary>Point-searches done (full GEMM rows) over the life of this assigner.</summary>
    public long SearchedPoints { get; private set; }

    /// <summary>Point-assignments made (n per step).</summary>
    public long AssignedPoints { get; private set; }

    /// <summary>Assigns every point to its nearest centre of <paramref name="centroids"/> [k, d].</summary>
    public void Step(Tensor centroids)
    {
        using var scope = NewDisposeScope();
        long n = _points.shape[0];
        AssignedPoints += n;
        bool fullSearch = !_useBounds || _lower is null || centroids.shape[0] == 1;
        if (fullSearch)
        {
            // Start the bounds (the extra per-group pass over the distance block) only once the
            // assignment has settled enough for them to skip points at the next step.
            bool wantBounds = _useBounds && _steps > 0 && centroids.shape[0] > 1 && _changedFraction < StartBoundsBelowChangedFraction;
            var previous = _useBounds && _steps > 0 ? Assignments.clone() : null;
            SetGroups(centroids.shape[0]);
            Tensor? second = wantBounds ? empty(n, _groups, _points.dtype, _points.device) : null;
            NearestCentroidSearch.SearchInto(_points, _pointNorms, centroids, _rowsPerChunk, Assignments, Distances, second, _groupSize);
            if (second is not null)
            {
                _lower = second.sqrt_().DetachFromDisposeScope();
            }

            if (previous is not null)
            {
                _changedFraction = (double)previous.ne(Assignments).sum().item<long>() / n;
            }

            _steps++;
            SearchedPoints += n;
            return;
        }

        _steps++;

        // Explicit scalars, alive for every call that reads them (no implicitly converted temporaries).
        using var two = 2.ToScalar();
        using var half = 0.5.ToScalar();
        using var margin = _margin.ToScalar();
        ExactDistances(centroids);
        // s(c): half the distance from each centre to its nearest other centre, by the same chunked
        // search (each centre's nearest is itself, so the "second nearest" is the nearest other).
        long k = centroids.shape[0];
        var self = empty(k, ScalarType.Int64, centroids.device);
        var selfDistance = empty(k, centroids.dtype, centroids.device);
        var other = empty(k, 1, centroids.dtype, centroids.device);
        NearestCentroidSearch.SearchInto(centroids, centroids.pow(two).sum(1), centroids, _rowsPerChunk, self, selfDistance, other, k);
        var halfGap = other.squeeze(1).sqrt_().mul_(half);                                                     // [k]
        var bound = maximum(halfGap.index_select(0, Assignments), _lower!.amin(1));                            // [n]
        var candidates = Distances.sqrt().gt(bound.sub(margin)).nonzero().squeeze(1);                          // [m]
        long m = candidates.shape[0];
        SearchedPoints += m;
        for (long start = 0; start < m; start += _rowsPerChunk)
        {
            using var chunk = NewDisposeScope();
            long rows = Math.Min(_rowsPerChunk, m - start);
            var index = candidates.narrow(0, start, rows);
            var assigned = empty(rows, ScalarType.Int64, _points.device);
            var nearest = empty(rows, _points.dtype, _points.device);
            var second = empty(rows, _groups, _points.dtype, _points.device);
            NearestCentroidSearch.SearchInto(_points.index_select(0, index), _pointNorms.index_select(0, index), centroids, rows, assigned, nearest, second, _groupSize);
            Assignments.index_copy_(0, index, assigned);
            Distances.index_copy_(0, index, nearest);
            _lower!.index_copy_(0, index, second.sqrt_());
        }
    }

    /// <summary>Records that centre c moved by <paramref name="movement"/>[c] (Euclidean), loosening the lower bounds.</summary>
    public void Moved(Tensor movement)
    {
        if (!_useBounds || _lower is null || movement.shape[0] < 2)
        {
            return;
        }

        using var scope = NewDisposeScope();
        long k = movement.shape[0];
        if (_groups == 1)
        {
            var (top, which) = movement.topk(2);                            // [2], [2]
            var decrement = where(Assignments.eq(which[0]), top[1], top[0]); // [n]: max over c ≠ a(i)
            _lower.sub_(decrement.unsqueeze(1));
            return;
        }

        // Movements are >= 0, so padding with 0 leaves every group's maximum unchanged.
        var padded = nn.functional.pad(movement, [0, (_groups * _groupSize) - k]); // [t · groupSize]
        var groupMax = padded.view(_groups, _groupSize).amax(1);                  // [t]
        _lower.sub_(groupMax.unsqueeze(0));
    }

    private void SetGroups(long k)
    {
        _groups = Math.Clamp(k / CentresPerGroup, 1, MaxGroups);
        _groupSize = (k + _groups - 1) / _groups;
        _groups = (k + _groupSize - 1) / _groupSize;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Assignments.Dispose();
        Distances.Dispose();
        _lower?.Dispose();
    }

    /// <summary>D(i) = ‖x_i − c_{a(i)}‖² for every point, in row chunks.</summary>
    private void ExactDistances(Tensor centroids)
    {
        long n = _points.shape[0];
        using var two = 2.ToScalar();
        for (long start = 0; start < n; start += _exactRows)
        {
            using var scope = NewDisposeScope();
            long rows = Math.Min(_exactRows, n - start);
            var centres = centroids.index_select(0, Assignments.narrow(0, start, rows));
            Distances.narrow(0, start, rows).copy_((_points.narrow(0, start, rows) - centres).pow_(two).sum(1));
        }
    }
}
