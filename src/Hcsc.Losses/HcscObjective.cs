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
/// <para>Cost per step: with a <see cref="QueueSelectionCache"/> the instance selection reads B cached threshold rows per
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
/// var r = objective.Compute(q, k, queue.Keys, idx, hierarchy, generator, cache: cache);
/// r.Total.backward();
/// </code>
/// </example>
public sealed class HcscObjective : IDisposable
{
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
    /// Use the C# kernels for the instance and PCSC cross-entropies when the tensors are on the CPU
    /// (default). False takes the tensor-operation path everywhere; tests use it to compare the two.
    /// </summary>
    internal bool HostKernels { get; init; } = true;

    /// <summary>Computes the objective and all its parts for one step.</summary>
    /// <param name="query">Global queries q <c>[B, d]</c>, L2-normalised, with gradient.</param>
    /// <param name="key">Keys k <c>[B, d]</c>, L2-normalised (detached here).</param>
    /// <param name="queue">Queue keys z <c>[Q, d]</c> (detached here).</param>
    /// <param name="batchIndices">Dataset index of each sample <c>[B]</c>, int64 in [0, N).</param>
    /// <param name="hierarchy">The cluster hierarchy; null during warm-up (plain InfoNCE).</param>
    /// <param name="generator">Random source of the masks, on the queries' device.</param>
    /// <param name="localQueries">Optional local views of multi-crop, each <c>[B, d]</c>, with gradient.</param>
    /// <param name="cache">Optional R4 cache (docs/method.md R4), refreshed for <paramref name="hierarchy"/> and <paramref name="queue"/>; null computes everything directly.</param>
    /// <returns>The total and every component, as tensors.</returns>
    public HcscLossResult Compute(
        Tensor query,
        Tensor key,
        Tensor queue,
        Tensor batchIndices,
        ClusterHierarchy? hierarchy,
        Generator generator,
        IReadOnlyList<Tensor>? localQueries = null,
        QueueSelectionCache? cache = null)
    {
        var locals = localQueries ?? [];
        Validate(query, key, queue, batchIndices, hierarchy, generator, locals, cache);
        using var scope = NewDisposeScope();
        var views = new List<Tensor> { query };
        views.AddRange(locals);
        var queueD = queue.detach();
        var keyD = key.detach();

        HcscLossResult result;
        if (hierarchy is null)
        {
            var terms = views.Select(v => InstanceContrast.Compute(v, keyD, queueD.t(), _options.Temperature, null, _options.UnselectedNegatives, HostKernels)).ToArray();
            var infoNce = terms.Select(t => t.InfoNce.mean()).ToArray();
            result = new HcscLossResult
            {
                Total = Sum(infoNce),
                InfoNce = infoNce[0],
                Instance = [],
                Prototype = [],
                LocalInfoNce = infoNce.Skip(1).ToArray(),
                LocalInstance = locals.Select(_ => (IReadOnlyList<Tensor>)[]).ToArray(),
                LocalPrototype = locals.Select(_ => (IReadOnlyList<Tensor>)[]).ToArray(),
                AcceptanceRatio = [],
                InstanceAccuracy = terms[0].Top1.to(query.dtype).mean(),
                PrototypeAccuracy = [],
                InstanceMasks = [],
                PrototypeMasks = [],
                LocalPrototypeMasks = locals.Select(_ => (IReadOnlyList<Tensor>)[]).ToArray(),
                PrototypeCandidates = [],
            };
        }
        else
        {
            result = Selective(views, keyD, queueD, batchIndices, hierarchy, generator, cache);
        }

        foreach (var tensor in result.Tensors())
        {
            tensor.MoveToOuterDisposeScope();
        }

        return result;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _memo?.Dispose();
        _memo = null;
    }

    private HcscLossResult Selective(
        List<Tensor> views,
        Tensor key,
        Tensor queue,
        Tensor batchIndices,
        ClusterHierarchy hierarchy,
        Generator generator,
        QueueSelectionCache? cache)
    {
        double tau = _options.Temperature;
        var handling = _options.UnselectedNegatives;
        var dtype = views[0].dtype;
        long batch = views[0].shape[0];
        long queueLength = queue.shape[0];
        int levels = hierarchy.LevelCount;
        bool instanceSelection = _options.InstanceSelection;
        bool localSelection = instanceSelection && _options.SelectionOnLocalViews;

        PrototypeSelectionMemo? stepMemo = null;
        var memo = cache is null ? stepMemo = PrototypeSelectionMemo.Create(hierarchy, tau, withThresholdTables: false) : Memo(hierarchy);
        try
        {
            var instance = views.Select(_ => new List<Tensor>()).ToArray();
            var prototype = views.Select(_ => new List<Tensor>()).ToArray();
            var acceptance = new List<Tensor>();
            var prototypeAccuracy = new List<Tensor>();
            var instanceMasks = new List<Tensor>();
            var prototypeMasks = views.Select(_ => new List<Tensor>()).ToArray();
            var candidatesPerLevel = new List<Tensor>();
            var instanceVectors = new Tensor?[views.Count];
            var labels = new Tensor[levels];
            for (int l = 0; l < levels; l++)
            {
                labels[l] = hierarchy.Levels[l].Assignments.index_select(0, batchIndices);           // [B]
            }

            // ICSC: kept ⇔ u > max(p_l(y | z), 1e-3) = 1 − clamp(accept, 0, 0.999). The masks of all levels are drawn
            // at once into one [L, B, Q] bool tensor; each view's terms of all levels then take one pass over its logits.
            Tensor? masks = null, keptCount = null;                                                    // keptCount: [L, B]
            if (instanceSelection)
            {
                using (no_grad())
                {
                    var tables = new ThresholdTable[levels];
                    for (int l = 0; l < levels; l++)
                    {
                        tables[l] = InstanceThresholds(queue, labels[l], hierarchy.Levels[l], l, cache, dtype);
                    }

                    (masks, keptCount) = BernoulliRows.Sample(tables, batch, generator);              // [L, B, Q] bool, [L, B]
                    for (int l = 0; l < levels; l++)
                    {
                        instanceMasks.Add(masks[l]);
                    }
                }
            }

            // PCSC: per level the candidates, then (below the top, when on) each view's own Bernoulli selection, drawn
            // level by level and view by view in this order, as the reference does.
            var selections = views.Select(_ => new Tensor[levels]).ToArray();                          // bool [B, k_l]
            var candidateCounts = Array.Empty<long>();
            for (int l = 0; l < levels; l++)
            {
                var level = hierarchy.Levels[l];
                var candidates = PrototypeSelector.CandidatesCore(labels[l], level, _options.ReproduceReferenceOffByOne ? memo.OffByOneBound(l) : null);
                candidatesPerLevel.Add(candidates);
                using (no_grad())
                {
                    var rejectThresholds = _options.PrototypeSelection && l < levels - 1 ? memo.RejectThresholds(l, labels[l], tau) : null;
                    for (int v = 0; v < views.Count; v++)
                    {
                        selections[v][l] = rejectThresholds is not null
                            ? PrototypeSelector.SampleCore(rejectThresholds, batch, candidates, generator)
                            : candidates.unsqueeze(0).expand(batch, level.ClusterCount).contiguous();
                        prototypeMasks[v].Add(selections[v][l]);
                    }
                }
            }

            bool hostPcsc = HostKernels && PrototypeContrast.OnHost(views[0]);
            if (hostPcsc)
            {
                candidateCounts = stack(candidatesPerLevel.Select(c => c.sum()).ToList()).data<long>().ToArray();   // one read
            }

            var stackedLabels = hostPcsc ? stack(labels) : null;                                        // [L, B]
            for (int v = 0; v < views.Count; v++)
            {
                if (hostPcsc)
                {
                    // All levels' logits in one product, and their cross-entropies in one pass.
                    var logits = views[v].mm(memo.PrototypeLogitWeights(dtype));                        // [B, Σ k_l]
                    var (loss, top1) = PrototypeContrast.Compute(logits, stackedLabels!, cat(selections[v], 1), memo.ClusterCounts, candidateCounts, handling);
                    for (int l = 0; l < levels; l++)
                    {
                        prototype[v].Add(loss.select(1, l).mean());
                        if (v == 0)
                        {
                            prototypeAccuracy.Add(top1.select(1, l).to(dtype).mean());
                        }
                    }

                    continue;
                }

                for (int l = 0; l < levels; l++)
                {
                    var (loss, top1) = PcscLoss.PerSample(views[v], labels[l], hierarchy.Levels[l], selections[v][l], candidatesPerLevel[l], handling);
                    prototype[v].Add(loss.mean());
                    if (v == 0)
                    {
                        prototypeAccuracy.Add(top1.to(dtype).mean());
                    }
                }
            }

            // Instance terms of every view: InfoNCE, and ICSC per level under the global query's masks.
            var infoNce = new Tensor[views.Count];
            Tensor? instanceAccuracy = null;
            for (int v = 0; v < views.Count; v++)
            {
                bool selectedView = masks is not null && (v == 0 || localSelection);
                var terms = InstanceContrast.Compute(views[v], key, queue.t(), tau, selectedView ? masks : null, handling, HostKernels);
                infoNce[v] = terms.InfoNce.mean();
                instanceAccuracy ??= terms.Top1.to(dtype).mean();
                if (terms.Selected is { } selected)
                {
                    var perLevel = selected.mean(new long[] { 0 });                                     // [L]
                    instanceVectors[v] = perLevel;
                    for (int l = 0; l < levels; l++)
                    {
                        instance[v].Add(perLevel[l]);
                    }
                }
            }

            if (masks is not null)
            {
                using var slots = queueLength.ToScalar();
                var ratio = keptCount!.to(dtype).mean(new long[] { 1 }).div(slots);                  // [L]
                for (int l = 0; l < levels; l++)
                {
                    acceptance.Add(ratio[l]);
                }
            }
            else
            {
                for (int l = 0; l < levels; l++)
                {
                    acceptance.Add(ones(Array.Empty<long>(), dtype: dtype, device: views[0].device));
                }
            }

            var parts = new List<Tensor>();
            for (int v = 0; v < views.Count; v++)
            {
                bool selected = v == 0 ? instanceSelection : localSelection;
                parts.Add(selected ? ReduceInstance(instanceVectors[v]!) : infoNce[v]);
                parts.Add(stack(prototype[v]).mean());
            }

            return new HcscLossResult
            {
                Total = Sum(parts),
                InfoNce = infoNce[0],
                Instance = instance[0],
                Prototype = prototype[0],
                LocalInfoNce = infoNce.Skip(1).ToArray(),
                LocalInstance = instance.Skip(1).Select(t => (IReadOnlyList<Tensor>)t).ToArray(),
                LocalPrototype = prototype.Skip(1).Select(t => (IReadOnlyList<Tensor>)t).ToArray(),
                AcceptanceRatio = acceptance,
                InstanceAccuracy = instanceAccuracy!,
                PrototypeAccuracy = prototypeAccuracy,
                InstanceMasks = instanceMasks,
                PrototypeMasks = prototypeMasks[0],
                LocalPrototypeMasks = prototypeMasks.Skip(1).Select(t => (IReadOnlyList<Tensor>)t).ToArray(),
                PrototypeCandidates = candidatesPerLevel,
            };
        }
        finally
        {
            stepMemo?.Dispose();
        }
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

        if (hierarchy is null)
        {
            return;
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
}
