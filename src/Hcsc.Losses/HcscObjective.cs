using Hcsc.Core.Devices;
using Hcsc.Core.Hierarchy;
using Hcsc.Core.Options;
using Hcsc.Core.Tensors;
using Hcsc.Losses.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Losses;

/// <summary>
/// The HCSC training objective for one step (docs/method.md §5): InfoNCE during warm-up, then per level l
/// ICSC_l (queue negatives selected by <see cref="InstanceSelector"/>) and PCSC_l (prototype negatives
/// selected by <see cref="PrototypeSelector"/>), combined as
/// <code>
///   Total = R2_l( ICSC_l ) + (1/L) Σ_l PCSC_l
///         + Σ_v [ R2_l( ICSC_l(v) ) + (1/L) Σ_l PCSC_l(v) ]        (local views v of multi-crop)
/// </code>
/// where R2 (docs/method.md R2) is a sum (reference) or a mean over levels, and a local view's ICSC uses the global query's
/// masks (without <see cref="ObjectiveOptions.SelectionOnLocalViews"/> it is one plain InfoNCE term).
/// With instance selection off, R2_l(ICSC_l) is replaced by InfoNCE.
/// </summary>
/// <remarks>
/// <para>Shapes: queries q and keys k <c>[B, d]</c> L2-normalised, queue <c>[Q, d]</c>, batch indices <c>[B]</c>
/// int64 dataset indices, local views <c>[B, d]</c> each. Gradients flow into the queries only.</para>
/// <para>The formula of each term is on the private step that computes it, in the order of a step: <see cref="Labels"/>,
/// <see cref="SampleInstanceMasks"/> (§3), <see cref="SelectPrototypes"/> (§4), <see cref="PrototypeTerms"/> (§4),
/// <see cref="InstanceTerms"/> (§1, §3, §7) and <see cref="Assemble"/> (§5); <see cref="InfoNceOnly"/> is the warm-up (§6).</para>
/// <para>Cost per step: with a <see cref="SelectiveKeyQueue"/> (its selection cache) the instance selection reads B cached threshold rows per
/// level in place (<see cref="QueueSelectionCacheMode.Thresholds"/>) or costs one <c>[B, d] × [d, Q]</c> product per level
/// (<see cref="QueueSelectionCacheMode.Normalisers"/>) (docs/method.md R4), and the prototype selection's normalisers are computed
/// once per hierarchy; without a cache every step recomputes the Q × k_l softmax and the k_l × k_{l+1} softmax, as the
/// reference code does. Both paths give the same values (and, for a given generator state, the same masks up to rounding
/// at the sampling threshold). On the CPU (float32/float64) mask sampling, InfoNCE with every level's ICSC, and every
/// level's PCSC (forward and backward) are C# kernels over the tensors' memory, on libtorch's thread count; elsewhere
/// tensor operations compute the same.</para>
/// <para>Random draws, in order: the ICSC masks of all levels <c>[L, B, Q]</c> (on the CPU one seed for per-row streams,
/// see <see cref="InstanceSelector.SampleMask"/>; its level-0 mask is what <c>SampleMask</c> draws from the same generator
/// state), then per level below the top, when prototype selection is on, a PCSC mask <c>[B, k_l]</c> for the global query
/// and one for each local view: as in the reference code, every view draws its own prototype mask, while the local views
/// share the global query's ICSC masks. Not thread-safe.</para>
/// </remarks>
/// <example>
/// <code>
/// using var objective = new HcscObjective(ObjectiveOptions.Reference());
/// using var queue = new SelectiveKeyQueue(length: 4096, dim: 128);
/// var r = objective.Compute(q, k, queue, idx, hierarchy, generator);  // hierarchy: null in the warm-up
/// r.Backward();
/// queue.Enqueue(k, idx);
/// </code>
/// </example>
public sealed class HcscObjective : IDisposable
{
    private const double UnitNormTolerance = 1e-3;
    private readonly ObjectiveOptions _options;
    private PrototypeSelectionMemo? _memo;

    /// <summary>Creates the objective.</summary>
    /// <param name="options">τ and the switches (<see cref="HcscOptions.Objective"/>, or <see cref="ObjectiveOptions.Reference"/> / <see cref="ObjectiveOptions.Paper"/>); copied. Null uses the defaults.</param>
    /// <exception cref="ArgumentException">An option is invalid (<see cref="HcscOptionsValidator.Problems(ObjectiveOptions)"/>); the message lists every problem.</exception>
    public HcscObjective(ObjectiveOptions? options = null)
    {
        _options = (options ?? new ObjectiveOptions()).Clone();
        HcscOptionsValidator.ThrowIfInvalid(HcscOptionsValidator.Problems(_options), nameof(options));
    }

    /// <summary>A copy of the options in use.</summary>
    public ObjectiveOptions Options => _options.Clone();

    /// <summary>
    /// Computes the objective and all its parts for one step against a <see cref="SelectiveKeyQueue"/>: its keys are the
    /// negatives, <paramref name="hierarchy"/> selects them (null during the warm-up: InfoNCE), and the queue's selection
    /// cache, kept in step with its keys, spares the Q × k_l softmax of every step (docs/method.md R4). A hierarchy the
    /// queue does not hold yet is handed to it first (<see cref="SelectiveKeyQueue.UseHierarchy"/>: the cache is computed
    /// once per clustering).
    /// </summary>
    /// <param name="query">Global queries q <c>[B, d]</c>, L2-normalised, with gradient.</param>
    /// <param name="key">Keys k <c>[B, d]</c>, L2-normalised (detached here).</param>
    /// <param name="queue">The queue of keys z <c>[Q, d]</c>; enqueue k after the step.</param>
    /// <param name="batchIndices">Dataset index of each sample <c>[B]</c>, int64 in [0, N).</param>
    /// <param name="hierarchy">The epoch's cluster hierarchy; null during the warm-up (plain InfoNCE).</param>
    /// <param name="generator">Random source of the masks: a CPU generator (TorchSharp's only kind); the masks are drawn on the queries' device from it.</param>
    /// <param name="localQueries">Local views of multi-crop, each <c>[B, d]</c>, with gradient; null or empty: none.</param>
    /// <returns>The total and every component, as tensors.</returns>
#pragma warning disable RS0026 // Two overloads with an optional last parameter: their third parameters' types differ (SelectiveKeyQueue, Tensor), so no call is ambiguous.
    public HcscLossResult Compute(
        Tensor query,
        Tensor key,
        SelectiveKeyQueue queue,
        Tensor batchIndices,
        ClusterHierarchy? hierarchy,
        Generator generator,
        IReadOnlyList<Tensor>? localQueries = null)
    {
        ArgumentNullException.ThrowIfNull(queue);
        if (hierarchy is null)
        {
            return Compute(query, key, queue.Keys, batchIndices, null, generator, cache: null, localQueries);
        }

        if (!ReferenceEquals(queue.Hierarchy, hierarchy))
        {
            ThrowIfDisposed(hierarchy);
            queue.UseHierarchy(hierarchy);
        }

        return Compute(query, key, queue.Keys, batchIndices, hierarchy, generator, queue.Cache, localQueries);
    }

    /// <summary>
    /// Computes the objective and all its parts for one step against queue keys held elsewhere. Every step computes the
    /// Q × k_l membership softmax of instance selection, as the reference code does; a <see cref="SelectiveKeyQueue"/>
    /// keeps it per slot instead (the same values).
    /// </summary>
    /// <param name="query">Global queries q <c>[B, d]</c>, L2-normalised, with gradient.</param>
    /// <param name="key">Keys k <c>[B, d]</c>, L2-normalised (detached here).</param>
    /// <param name="queue">Queue keys z <c>[Q, d]</c> (detached here).</param>
    /// <param name="batchIndices">Dataset index of each sample <c>[B]</c>, int64 in [0, N).</param>
    /// <param name="hierarchy">The cluster hierarchy; null during warm-up (plain InfoNCE).</param>
    /// <param name="generator">Random source of the masks: a CPU generator (TorchSharp's only kind); the masks are drawn on the queries' device from it.</param>
    /// <param name="localQueries">Optional local views of multi-crop, each <c>[B, d]</c>, with gradient.</param>
    /// <returns>The total and every component, as tensors.</returns>
    public HcscLossResult Compute(
        Tensor query,
        Tensor key,
        Tensor queue,
        Tensor batchIndices,
        ClusterHierarchy? hierarchy,
        Generator generator,
        IReadOnlyList<Tensor>? localQueries = null) =>
        Compute(query, key, queue, batchIndices, hierarchy, generator, cache: null, localQueries);
#pragma warning restore RS0026

    /// <summary>
    /// Both public overloads end here; tests and benchmarks call it with a cache they maintain themselves, which must be
    /// refreshed for <paramref name="hierarchy"/> and in step with <paramref name="queue"/>.
    /// </summary>
    internal HcscLossResult Compute(
        Tensor query,
        Tensor key,
        Tensor queue,
        Tensor batchIndices,
        ClusterHierarchy? hierarchy,
        Generator generator,
        QueueSelectionCache? cache,
        IReadOnlyList<Tensor>? localQueries = null)
    {
        var locals = localQueries ?? [];
        Validate(query, key, queue, batchIndices, hierarchy, generator, locals, cache);
        using var kernels = _options.Kernels == KernelPath.Auto ? null : KernelSelection.Use(_options.Kernels);
        using var scope = NewDisposeScope();
        var views = new List<Tensor> { query };
        views.AddRange(locals);
        var result = hierarchy is null
            ? InfoNceOnly(views, key.detach(), queue.detach())
            : Selective(views, key.detach(), queue.detach(), batchIndices, hierarchy, generator, cache);
        foreach (var tensor in result.Tensors())
        {
            tensor.MoveToOuterDisposeScope();
        }

        return result;
    }

    // One message for a hierarchy disposed too early, whether this call or the queue it was given to still holds it.
    private static void ThrowIfDisposed(ClusterHierarchy hierarchy)
    {
        if (hierarchy.IsDisposed)
        {
            throw new ObjectDisposedException(nameof(hierarchy),
                "The cluster hierarchy was disposed while it is still in use (by this call, or by the SelectiveKeyQueue it was given to). " +
                "After a new clustering, give the queue the new hierarchy (queue.UseHierarchy(next)) before disposing the old result, " +
                "or call queue.UseHierarchy(null) to train with InfoNCE.");
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _memo?.Dispose();
        _memo = null;
    }

    /// <summary>
    /// The warm-up objective (docs/method.md §6): InfoNCE of every view v against k and the whole queue,
    /// <c>Total = Σ_v InfoNCE(v)</c>, with x_p = q·k/τ and X_j = q·z_j/τ per query (§1):
    /// <code>
    ///   InfoNCE = (1/B) Σ_n [ log( e^{x_p} + Σ_j e^{X_j} ) − x_p ]
    /// </code>
    /// </summary>
    private HcscLossResult InfoNceOnly(List<Tensor> views, Tensor key, Tensor queue)
    {
        var terms = views.Select(v => InstanceContrast.Compute(v, key, queue.t(), _options.Temperature, null, _options.UnselectedNegatives)).ToArray();
        var infoNce = terms.Select(t => t.InfoNce.mean()).ToArray();
        var locals = views.Skip(1).ToArray();
        return new HcscLossResult
        {
            Total = Sum(infoNce),
            InfoNce = infoNce[0],
            Instance = [],
            Prototype = [],
            LocalInfoNce = infoNce.Skip(1).ToArray(),
            LocalInstance = locals.Select(_ => (IReadOnlyList<Tensor>)[]).ToArray(),
            LocalPrototype = locals.Select(_ => (IReadOnlyList<Tensor>)[]).ToArray(),
            AcceptanceRatio = [],
            InstanceAccuracy = terms[0].Top1.to(views[0].dtype).mean(),
            PrototypeAccuracy = [],
            InstanceMasks = [],
            PrototypeMasks = [],
            LocalPrototypeMasks = locals.Select(_ => (IReadOnlyList<Tensor>)[]).ToArray(),
            PrototypeCandidates = [],
        };
    }

    /// <summary>
    /// The objective after the warm-up (docs/method.md §5), one named step per part; the random draws in the order of §5
    /// (all instance masks, then the prototype masks level by level and view by view).
    /// </summary>
    private HcscLossResult Selective(
        List<Tensor> views,
        Tensor key,
        Tensor queue,
        Tensor batchIndices,
        ClusterHierarchy hierarchy,
        Generator generator,
        QueueSelectionCache? cache)
    {
        // With a cache the prototype normalisers live as long as the hierarchy; without, for this step only.
        PrototypeSelectionMemo? stepMemo = null;
        var memo = cache is null ? stepMemo = PrototypeSelectionMemo.Create(hierarchy, _options.Temperature, withThresholdTables: false) : Memo(hierarchy);
        try
        {
            var labels = Labels(hierarchy, batchIndices);
            var instanceMasks = _options.InstanceSelection ? SampleInstanceMasks(queue, labels, hierarchy, cache, views[0], generator) : null;
            var prototypeSelection = SelectPrototypes(views.Count, labels, hierarchy, memo, generator);
            var prototype = PrototypeTerms(views, labels, hierarchy, memo, prototypeSelection);
            var instance = InstanceTerms(views, key, queue, instanceMasks?.Masks);
            return Assemble(views, instance, prototype, instanceMasks, prototypeSelection, queue.shape[0], hierarchy.LevelCount);
        }
        finally
        {
            stepMemo?.Dispose();
        }
    }

    /// <summary>The positive's cluster at every level, y_l[n] = a_l(idx_n) <c>[B]</c> (docs/method.md §3, §4).</summary>
    private static Tensor[] Labels(ClusterHierarchy hierarchy, Tensor batchIndices)
    {
        var labels = new Tensor[hierarchy.LevelCount];
        for (int l = 0; l < labels.Length; l++)
        {
            labels[l] = hierarchy.Levels[l].Assignments.index_select(0, batchIndices);
        }

        return labels;
    }

    /// <summary>
    /// The ICSC masks of all levels (docs/method.md §3), drawn at once into one bool <c>[L, B, Q]</c> tensor, with the
    /// number kept per query <c>[L, B]</c>. Queue key z_j stays a negative of query n at level l with probability
    /// <code>
    ///   accept_l[n, j] = clamp( 1 − p_l(y_n | z_j), 0, 0.999 ),   p_l(c | z) = softmax_c( z · C_l[c] / max(φ_l(c), 1e-3) )
    /// </code>
    /// i.e. kept ⇔ u &gt; max(p_l(y_n | z_j), 1e-3) (<see cref="InstanceThresholds"/>).
    /// </summary>
    private static InstanceMasks SampleInstanceMasks(Tensor queue, Tensor[] labels, ClusterHierarchy hierarchy, QueueSelectionCache? cache, Tensor query, Generator generator)
    {
        using var noGrad = no_grad();
        var tables = new ThresholdTable[labels.Length];
        for (int l = 0; l < labels.Length; l++)
        {
            tables[l] = InstanceThresholds(queue, labels[l], hierarchy.Levels[l], l, cache, query.dtype);
        }

        var (masks, keptCount) = BernoulliRows.Sample(tables, query.shape[0], generator);
        return new InstanceMasks(masks, keptCount);
    }

    /// <summary>
    /// The PCSC candidates of every level and each view's own selection among them (docs/method.md §4, R3). Candidates
    /// are the prototypes that are no query's positive c⁺_n; below the top level (when prototype selection is on)
    /// candidate c stays a negative of query n with probability
    /// <code>
    ///   accept_l[n, c] = clamp( 1 − softmax_p( S_l[c, p] / φ'_{l+1}(p) ) at p = parent_l(c⁺_n), 1e-4, 0.999 )
    /// </code>
    /// drawn level by level and view by view in this order, as the reference does; at the top level every candidate is kept.
    /// </summary>
    private PrototypeSelection SelectPrototypes(int viewCount, Tensor[] labels, ClusterHierarchy hierarchy, PrototypeSelectionMemo memo, Generator generator)
    {
        int levels = labels.Length;
        long batch = labels[0].shape[0];
        var candidates = new Tensor[levels];
        var masks = Enumerable.Range(0, viewCount).Select(_ => new Tensor[levels]).ToArray();
        for (int l = 0; l < levels; l++)
        {
            var level = hierarchy.Levels[l];
            candidates[l] = PrototypeSelector.CandidateMask(labels[l], level, _options.ReproduceReferenceOffByOne ? memo.OffByOneBound(l) : null);
            using var noGrad = no_grad();
            var rejectThresholds = _options.PrototypeSelection && l < levels - 1 ? memo.RejectThresholds(l, labels[l], _options.Temperature) : null;
            for (int v = 0; v < viewCount; v++)
            {
                masks[v][l] = rejectThresholds is not null
                    ? PrototypeSelector.SampleFromThresholds(rejectThresholds, batch, candidates[l], generator)
                    : candidates[l].unsqueeze(0).expand(batch, level.ClusterCount).contiguous();
            }
        }

        return new PrototypeSelection(candidates, masks);
    }

    /// <summary>
    /// PCSC_l of every view v and level l (docs/method.md §4, R1): the prototype logits use the concentrations as
    /// temperatures,
    /// <code>
    ///   logits_l[n] = [ q_n · C_l[c⁺_n] / φ_l(c⁺_n),  q_n · C_l[c] / φ_l(c) for the selected candidates c ]
    ///   PCSC_l      = (1/B) Σ_n CE( logits_l[n], target 0 )
    /// </code>
    /// an unselected candidate left out or given logit 0 (<see cref="ObjectiveOptions.UnselectedNegatives"/>); and the
    /// global query's top-1 accuracy per level. On the CPU one product and one kernel pass cover all levels of a view.
    /// </summary>
    private PrototypeTermSet PrototypeTerms(List<Tensor> views, Tensor[] labels, ClusterHierarchy hierarchy, PrototypeSelectionMemo memo, PrototypeSelection selection)
    {
        var dtype = views[0].dtype;
        var handling = _options.UnselectedNegatives;
        var loss = views.Select(_ => new List<Tensor>()).ToArray();
        var accuracy = new List<Tensor>();
        bool host = PrototypeContrast.OnHost(views[0]);
        var candidateCounts = host ? stack(selection.Candidates.Select(c => c.sum()).ToList()).data<long>().ToArray() : [];   // one read
        var stackedLabels = host ? stack(labels) : null;                                                                           // [L, B]
        for (int v = 0; v < views.Count; v++)
        {
            if (host)
            {
                var logits = views[v].mm(memo.PrototypeLogitWeights(dtype));                                                        // [B, Σ k_l]
                var (perSample, top1) = PrototypeContrast.Compute(logits, stackedLabels!, cat(selection.Masks[v], 1), memo.ClusterCounts, candidateCounts, handling);
                for (int l = 0; l < labels.Length; l++)
                {
                    loss[v].Add(perSample.select(1, l).mean());
                    if (v == 0)
                    {
                        accuracy.Add(top1.select(1, l).to(dtype).mean());
                    }
                }

                continue;
            }

            for (int l = 0; l < labels.Length; l++)
            {
                var (perSample, top1) = PcscLoss.PerSample(views[v], labels[l], hierarchy.Levels[l], selection.Masks[v][l], selection.Candidates[l], handling);
                loss[v].Add(perSample.mean());
                if (v == 0)
                {
                    accuracy.Add(top1.to(dtype).mean());
                }
            }
        }

        return new PrototypeTermSet(loss, accuracy);
    }

    /// <summary>
    /// The instance terms of every view v (docs/method.md §1, §3, §7): with x_p = q_n·k_n/τ and X_j = q_n·z_j/τ,
    /// <code>
    ///   InfoNCE = (1/B) Σ_n [ log( e^{x_p} + Σ_j e^{X_j} ) − x_p ]
    ///   ICSC_l  = (1/B) Σ_n [ log( e^{x_p} + Σ_j m_l[n, j] e^{X_j} + ρ Σ_j (1 − m_l[n, j]) ) − x_p ]
    /// </code>
    /// with ρ = 1 for the reference's zero logits, 0 for exclusion (R1). Every level's ICSC under the global query's masks
    /// m_l, for the global query and, with <see cref="ObjectiveOptions.SelectionOnLocalViews"/>, the local views; one pass
    /// over each view's logits. The accuracy is the global query's instance top-1.
    /// </summary>
    private InstanceTermSet InstanceTerms(List<Tensor> views, Tensor key, Tensor queue, Tensor? masks)
    {
        bool localSelection = _options.InstanceSelection && _options.SelectionOnLocalViews;
        var infoNce = new Tensor[views.Count];
        var perLevel = new Tensor?[views.Count];
        var levels = views.Select(_ => new List<Tensor>()).ToArray();
        Tensor? accuracy = null;
        for (int v = 0; v < views.Count; v++)
        {
            bool selectedView = masks is not null && (v == 0 || localSelection);
            var terms = InstanceContrast.Compute(views[v], key, queue.t(), _options.Temperature, selectedView ? masks : null, _options.UnselectedNegatives);
            infoNce[v] = terms.InfoNce.mean();
            accuracy ??= terms.Top1.to(views[0].dtype).mean();
            if (terms.Selected is { } selected)
            {
                perLevel[v] = selected.mean(new long[] { 0 });                                                                      // [L]
                for (int l = 0; l < perLevel[v]!.shape[0]; l++)
                {
                    levels[v].Add(perLevel[v]![l]);
                }
            }
        }

        return new InstanceTermSet(infoNce, perLevel, levels, accuracy!);
    }

    /// <summary>
    /// The total and the result (docs/method.md §5, R2):
    /// <code>
    ///   Total = Σ_views [ R2_l( ICSC_l(v) ) + (1/L) Σ_l PCSC_l(v) ]      (InfoNCE(v) for R2_l(ICSC_l(v)) where v selects nothing)
    ///   acceptance_l = mean_{n, j} m_l[n, j]                           (1 with instance selection off)
    /// </code>
    /// </summary>
    private HcscLossResult Assemble(
        List<Tensor> views,
        InstanceTermSet instance,
        PrototypeTermSet prototype,
        InstanceMasks? instanceMasks,
        PrototypeSelection selection,
        long queueLength,
        int levels)
    {
        var dtype = views[0].dtype;
        var parts = new List<Tensor>();
        for (int v = 0; v < views.Count; v++)
        {
            parts.Add(instance.PerLevel[v] is { } perLevel ? ReduceInstance(perLevel) : instance.InfoNce[v]);
            parts.Add(stack(prototype.Loss[v]).mean());
        }

        return new HcscLossResult
        {
            Total = Sum(parts),
            InfoNce = instance.InfoNce[0],
            Instance = instance.Levels[0],
            Prototype = prototype.Loss[0],
            LocalInfoNce = instance.InfoNce.Skip(1).ToArray(),
            LocalInstance = instance.Levels.Skip(1).Select(t => (IReadOnlyList<Tensor>)t).ToArray(),
            LocalPrototype = prototype.Loss.Skip(1).Select(t => (IReadOnlyList<Tensor>)t).ToArray(),
            AcceptanceRatio = AcceptanceRatios(instanceMasks, queueLength, levels, views[0]),
            InstanceAccuracy = instance.Accuracy,
            PrototypeAccuracy = prototype.Accuracy,
            InstanceMasks = instanceMasks is null ? [] : Enumerable.Range(0, levels).Select(l => instanceMasks.Masks[l]).ToArray(),
            PrototypeMasks = selection.Masks[0],
            LocalPrototypeMasks = selection.Masks.Skip(1).Select(t => (IReadOnlyList<Tensor>)t).ToArray(),
            PrototypeCandidates = selection.Candidates,
        };
    }

    /// <summary>The share of queue negatives kept per level, mean_{n, j} m_l[n, j]; 1 at every level without instance selection.</summary>
    private static Tensor[] AcceptanceRatios(InstanceMasks? instanceMasks, long queueLength, int levels, Tensor query)
    {
        if (instanceMasks is null)
        {
            return Enumerable.Range(0, levels).Select(_ => ones(Array.Empty<long>(), dtype: query.dtype, device: query.device)).ToArray();
        }

        using var slots = queueLength.ToScalar();
        var ratio = instanceMasks.KeptCount.to(query.dtype).mean(new long[] { 1 }).div(slots);                                     // [L]
        return Enumerable.Range(0, levels).Select(l => ratio[l]).ToArray();
    }

    /// <summary>
    /// The rejection thresholds max(p_l(y_n | z_j), 1e-3) of level l: the cached table's rows y_n (no copy), or
    /// <c>[B, Q]</c> computed from the cached normalisers or, without a cache, from the full softmax.
    /// </summary>
    private static ThresholdTable InstanceThresholds(Tensor queue, Tensor labels, ClusterLevel level, int l, QueueSelectionCache? cache, ScalarType dtype)
    {
        if (cache is not null && cache.Thresholds.Count > 0)
        {
            return new ThresholdTable(cache.Thresholds[l], labels);
        }

        var logZ = cache is null ? InstanceSelector.LogNormalisers(queue, level) : cache.LogNormalisers[l];
        using var floor = Math.Log(1.0 - InstanceSelector.MaxAcceptance).ToScalar();
        return new ThresholdTable(InstanceSelector.LogMembership(queue, labels, level, logZ).clamp_min_(floor).exp_().to(dtype), null);
    }

    private Tensor ReduceInstance(Tensor perLevel) =>
        _options.InstanceLevelReduction == LevelReduction.Sum ? perLevel.sum() : perLevel.mean();

    private static Tensor Sum(IReadOnlyList<Tensor> terms)
    {
        using var one = 1.ToScalar(); // explicit alpha: Tensor.add(Tensor) would make an implicit Scalar 1 itself
        var total = terms[0].alias();
        for (int i = 1; i < terms.Count; i++)
        {
            total = total.add(terms[i], one);
        }

        return total;
    }

    private PrototypeSelectionMemo Memo(ClusterHierarchy hierarchy)
    {
        if (_memo is null || !ReferenceEquals(_memo.Hierarchy, hierarchy))
        {
            _memo?.Dispose();
            _memo = PrototypeSelectionMemo.Create(hierarchy, _options.Temperature, withThresholdTables: true);
        }

        return _memo;
    }

    private void Validate(
        Tensor query,
        Tensor key,
        Tensor queue,
        Tensor batchIndices,
        ClusterHierarchy? hierarchy,
        Generator generator,
        IReadOnlyList<Tensor> locals,
        QueueSelectionCache? cache)
    {
        IcscLoss.CheckQueryKeyQueue(query, key, queue, _options.Temperature);
        Guard.Indices(batchIndices, nameof(batchIndices), query.shape[0]);
        Guard.SameDevice(batchIndices, nameof(batchIndices), query, nameof(query));
        ArgumentNullException.ThrowIfNull(generator);
        for (int i = 0; i < locals.Count; i++)
        {
            string name = $"localQueries[{i}]";
            Guard.Matrix(locals[i], name, "[B, d]");
            Guard.SameShape(locals[i], name, query, nameof(query));
            Guard.SameDtypeAndDevice(locals[i], name, query, nameof(query));
        }

        if (_options.CheckUnitNorm)
        {
            foreach (var (rows, name) in locals.Select((l, i) => (l, $"localQueries[{i}]")).Prepend((key, nameof(key))).Prepend((query, nameof(query))))
            {
                Guard.UnitRows(rows, name, UnitNormTolerance);
            }
        }

        if (hierarchy is null)
        {
            return;
        }

        ThrowIfDisposed(hierarchy);
        if (hierarchy.ConcentrationTemperature is { } tau && Math.Abs(tau - _options.Temperature) > 1e-9 * _options.Temperature)
        {
            throw new ArgumentException(
                $"The hierarchy's concentrations were rescaled for τ = {tau} (the temperature given to HierarchicalKMeans), but this objective uses τ = {_options.Temperature} " +
                "(ObjectiveOptions.Temperature); the selection probabilities assume one τ. Pass the same value to both, e.g. new HierarchicalKMeans(options.Clustering, options.Objective.Temperature).",
                nameof(hierarchy));
        }

        Guard.SameDevice(hierarchy.Levels[0].Prototypes, nameof(hierarchy) + " prototypes", query, nameof(query));
        Guard.EmbeddingSize(query, nameof(query), hierarchy.EmbeddingSize, "the hierarchy's prototypes");
        Guard.Range(batchIndices, nameof(batchIndices), hierarchy.SampleCount, $"the hierarchy covers {hierarchy.SampleCount} samples", _options.CheckIndexRangesOnDevice);
        if (cache is not null)
        {
            if (!ReferenceEquals(cache.Hierarchy, hierarchy))
            {
                throw new ArgumentException("The queue selection cache was refreshed for another hierarchy (or never); call cache.Refresh(hierarchy, queue) after each clustering.", nameof(cache));
            }

            if (cache.QueueLength != queue.shape[0])
            {
                throw new ArgumentException($"The queue selection cache covers {cache.QueueLength} slots but {nameof(queue)} is {queue.Describe()}.", nameof(cache));
            }

            Guard.SameDevice(cache.LogNormalisers[0], "the queue selection cache", queue, nameof(queue));
        }
    }

    /// <summary>The ICSC masks of all levels, bool <c>[L, B, Q]</c> (true: kept), and the number kept per query <c>[L, B]</c>.</summary>
    private sealed record InstanceMasks(Tensor Masks, Tensor KeptCount);

    /// <summary>Per level the PCSC candidates, bool <c>[k_l]</c>; per view and level the selected ones, bool <c>[B, k_l]</c>.</summary>
    private sealed record PrototypeSelection(Tensor[] Candidates, Tensor[][] Masks);

    /// <summary>Per view the PCSC term of each level; the global query's prototype top-1 per level.</summary>
    private sealed record PrototypeTermSet(List<Tensor>[] Loss, List<Tensor> Accuracy);

    /// <summary>Per view InfoNCE, the ICSC terms as one <c>[L]</c> vector (null: the view selects nothing) and as a list; the global query's instance top-1.</summary>
    private sealed record InstanceTermSet(Tensor[] InfoNce, Tensor?[] PerLevel, List<Tensor>[] Levels, Tensor Accuracy);
}
