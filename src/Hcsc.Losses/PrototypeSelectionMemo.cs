using Hcsc.Core.Hierarchy;
using Hcsc.Losses.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Losses;

/// <summary>
/// What prototype selection needs that depends on the hierarchy alone, computed once per hierarchy:
/// the parents' log-normalisers of every level below the top (<see cref="PrototypeSelector.ParentLogNormalisers"/>),
/// the R3 bound (docs/method.md R3) max_i a_l(i) per level and, optionally, the rejection thresholds of every candidate for every
/// possible parent of the positive,
/// <code>
///   T_l[p, c] = 1 − clamp(1 − softmax_p'( S_l[c, p'] / φ'_{l+1}(p') )[p], 1e-4, 0.999)        [k_{l+1}, k_l]
/// </code>
/// so that a step's PCSC mask reads rows p = parent_l(c⁺_n) of T_l instead of computing <c>[B, k_l]</c> acceptances.
/// The table holds exactly the values <see cref="PrototypeSelector.SampleMask"/> compares with, so both give the same masks.
/// </summary>
internal sealed class PrototypeSelectionMemo : IDisposable
{
    private readonly Tensor?[] _parentLogNormalisers;
    private readonly Tensor[] _offByOneBounds;
    private readonly Tensor?[] _rejectThresholds;
    private Tensor? _logitWeights;

    private PrototypeSelectionMemo(ClusterHierarchy hierarchy, Tensor?[] parentLogNormalisers, Tensor[] offByOneBounds, Tensor?[] rejectThresholds)
    {
        Hierarchy = hierarchy;
        _parentLogNormalisers = parentLogNormalisers;
        _offByOneBounds = offByOneBounds;
        _rejectThresholds = rejectThresholds;
    }

    public ClusterHierarchy Hierarchy { get; }

    /// <param name="hierarchy">The hierarchy.</param>
    /// <param name="temperature">τ.</param>
    /// <param name="withThresholdTables">Also build the <c>[k_{l+1}, k_l]</c> tables (worth it when the memo serves many steps).</param>
    public static PrototypeSelectionMemo Create(ClusterHierarchy hierarchy, double temperature, bool withThresholdTables)
    {
        int levels = hierarchy.LevelCount;
        var normalisers = new Tensor?[levels];
        var bounds = new Tensor[levels];
        var tables = new Tensor?[levels];
        using var noGrad = no_grad();
        for (int l = 0; l < levels; l++)
        {
            var level = hierarchy.Levels[l];
            bounds[l] = level.Assignments.max().DetachFromDisposeScope();
            if (l == levels - 1)
            {
                continue;
            }

            normalisers[l] = PrototypeSelector.ParentLogNormalisers(level, hierarchy.Levels[l + 1], temperature).DetachFromDisposeScope();
            if (withThresholdTables)
            {
                using var scope = NewDisposeScope();
                // arange(start, stop, step) with explicit scalars: arange(stop) would make implicit ones itself.
                using var start = 0.ToScalar();
                using var stop = hierarchy.Levels[l + 1].ClusterCount.ToScalar();
                using var step = 1.ToScalar();
                var everyParent = arange(start, stop, step, dtype: ScalarType.Int64, device: level.Prototypes.device);
                var accept = PrototypeSelector.AcceptanceGivenParents(everyParent, level, hierarchy.Levels[l + 1], temperature, normalisers[l]!); // [k_{l+1}, k_l]
                tables[l] = PrototypeSelector.RejectThresholds(accept).contiguous().MoveToOuterDisposeScope().DetachFromDisposeScope();
            }
        }

        return new PrototypeSelectionMemo(hierarchy, normalisers, bounds, tables);
    }

    /// <summary>k_l per level.</summary>
    public long[] ClusterCounts => Hierarchy.Levels.Select(l => l.ClusterCount).ToArray();

    /// <summary>
    /// (C_l / φ_l) of all levels side by side, transposed: <c>[d, Σ k_l]</c> in <paramref name="dtype"/>, so that
    /// q · this gives every level's PCSC logits in one product. Built on first use per dtype.
    /// </summary>
    public Tensor PrototypeLogitWeights(ScalarType dtype)
    {
        if (_logitWeights is null || _logitWeights.dtype != dtype)
        {
            _logitWeights?.Dispose();
            using var scope = NewDisposeScope();
            var scaled = Hierarchy.Levels.Select(l => l.Prototypes.to(dtype).div(l.Concentrations.to(dtype).unsqueeze(1))).ToList();
            _logitWeights = cat(scaled, 0).t().contiguous().MoveToOuterDisposeScope().DetachFromDisposeScope();
        }

        return _logitWeights;
    }

    public Tensor ParentLogNormalisers(int level) => _parentLogNormalisers[level]!;

    public Tensor OffByOneBound(int level) => _offByOneBounds[level];

    /// <summary>The thresholds to draw level l's PCSC masks from, for positives <paramref name="labels"/> <c>[B]</c>.</summary>
    public ThresholdTable RejectThresholds(int level, Tensor labels, double temperature)
    {
        var clusterLevel = Hierarchy.Levels[level];
        var parents = clusterLevel.Parents!.index_select(0, labels);                                  // [B]
        if (_rejectThresholds[level] is { } table)
        {
            return new ThresholdTable(table, parents);
        }

        var accept = PrototypeSelector.AcceptanceGivenParents(parents, clusterLevel, Hierarchy.Levels[level + 1], temperature, ParentLogNormalisers(level));
        return new ThresholdTable(PrototypeSelector.RejectThresholds(accept).contiguous(), null);
    }

    public void Dispose()
    {
        _logitWeights?.Dispose();
        foreach (var tensor in _parentLogNormalisers.Concat(_rejectThresholds))
        {
            tensor?.Dispose();
        }

        foreach (var tensor in _offByOneBounds)
        {
            tensor.Dispose();
        }
    }
}
