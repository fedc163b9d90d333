using Hcsc.Core.Hierarchy;
using Hcsc.Losses.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Losses;

/// <summary>
/// ICSC's acceptance-rejection sampler (docs/method.md §3). For a query whose positive belongs to cluster
/// y = a_l(idx) at level l, a queue key z_j is kept as a negative with probability
/// <code>
///   p_l(c | z_j)  = softmax_c( z_j · C_l[c] / max(φ_l(c), 1e-3) )
///   accept[n, j]  = 1 − p_l(y_n | z_j)
///   mask[n, j]    ~ Bernoulli( clamp(accept[n, j], 0, 0.999) )
/// </code>
/// The denominator of p_l(· | z_j) depends only on z_j and the level's prototypes, so it can be
/// computed once per key (<see cref="LogNormalisers"/>, kept up to date by the cache of a <see cref="SelectiveKeyQueue"/>)
/// instead of once per step (docs/method.md R4); pass it to <see cref="AcceptanceProbabilities"/> to get the same
/// values in O(B·Q·d). Everything here runs without gradient.
/// </summary>
/// <example>
/// <code>
/// var accept = InstanceSelector.AcceptanceProbabilities(queue, labels, hierarchy.Levels[0]); // [B, Q]
/// var mask = InstanceSelector.SampleMask(accept, generator);                                 // [B, Q], 1 = kept
/// var loss = IcscLoss.Compute(query, key, queue, mask, 0.2, UnselectedNegativeHandling.ZeroLogit);
/// </code>
/// </example>
public static class InstanceSelector
{
    /// <summary>The concentrations are floored at this value when used as temperatures: max(φ, 1e-3).</summary>
    public const double MinConcentration = 1e-3;

    /// <summary>Acceptance probabilities are clamped to at most this value before sampling.</summary>
    public const double MaxAcceptance = 0.999;

    private const long Chunk = 4096;

    /// <summary>
    /// The log-normaliser of p_l(· | z) for each key: logsumexp over c of z · C_l[c] / max(φ_l(c), 1e-3).
    /// </summary>
    /// <param name="keys">Keys <c>[M, d]</c> (e.g. the whole queue, or a batch about to be enqueued).</param>
    /// <param name="level">The cluster level l.</param>
    /// <returns><c>[M]</c>, in the dtype of <paramref name="keys"/>, without gradient.</returns>
    public static Tensor LogNormalisers(Tensor keys, ClusterLevel level)
    {
        Guard.Matrix(keys, nameof(keys), "[M, d]");
        Guard.Level(level, keys, nameof(keys));
        using var outer = NewDisposeScope();
        using var noGrad = no_grad();
        var scaled = ScaledPrototypes(level, keys.dtype);
        var k = keys.detach();
        long rows = k.shape[0];
        var parts = new List<Tensor>();
        for (long start = 0; start < rows; start += Chunk)
        {
            long length = Math.Min(Chunk, rows - start);
            parts.Add(k.narrow(0, start, length).mm(scaled.t()).logsumexp(1));
        }

        var result = parts.Count == 1 ? parts[0] : cat(parts, 0);
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// accept[n, j] = 1 − p_l(labels[n] | queue[j]), unclamped, in [0, 1].
    /// </summary>
    /// <param name="queue">Queue keys z <c>[Q, d]</c>.</param>
    /// <param name="labels">Cluster of each query's positive at this level, y = a_l(idx), <c>[B]</c> int64 in [0, k_l).</param>
    /// <param name="level">The cluster level l.</param>
    /// <param name="logNormalisers">
    /// Optional cached <see cref="LogNormalisers"/> of <paramref name="queue"/> <c>[Q]</c>. Null computes the
    /// full softmax over the k_l prototypes for every key (the reference implementation's way).
    /// </param>
    /// <returns><c>[B, Q]</c> in the dtype of <paramref name="queue"/>, without gradient.</returns>
    public static Tensor AcceptanceProbabilities(Tensor queue, Tensor labels, ClusterLevel level, Tensor? logNormalisers = null)
    {
        Guard.Matrix(queue, nameof(queue), "[Q, d]");
        Guard.Level(level, queue, nameof(queue));
        Guard.Labels(labels, nameof(labels));

        Guard.SameDevice(labels, nameof(labels), queue, nameof(queue));
        Guard.Range(labels, nameof(labels), level.ClusterCount, $"level {level.Index} has {level.ClusterCount} prototypes", force: false);
        if (logNormalisers is not null)
        {
            Guard.Vector(logNormalisers, nameof(logNormalisers), queue.shape[0]);
            Guard.SameDevice(logNormalisers, nameof(logNormalisers), queue, nameof(queue));
        }

        using var outer = NewDisposeScope();
        using var noGrad = no_grad();
        var logZ = logNormalisers ?? LogNormalisers(queue, level);
        var logP = LogMembership(queue.detach(), labels, level, logZ);
        using var unit = 1.0.ToScalar(); // explicit scalar and alpha: add_(Scalar) would make an implicit alpha 1 itself
        using var one = 1.ToScalar();
        return logP.exp_().neg_().add_(unit, one).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Draws the selection mask: mask[n, j] = 1 (kept) with probability clamp(accept[n, j], 0, 0.999),
    /// else 0, using one uniform u ∈ [0, 1) per entry: kept ⇔ u &gt; 1 − clamp(accept, 0, 0.999).
    /// On the CPU the uniforms come from per-row xoshiro128+ streams under one seed drawn from
    /// <paramref name="generator"/> (fast, and the same whatever the thread count); on other devices (and under
    /// <see cref="Core.Options.KernelPath.Tensor"/>) they are drawn on the tensor's device through
    /// <see cref="Core.Randomness.DeviceRandom"/>. Either way the same generator state gives the same mask, and
    /// <see cref="HcscObjective"/> draws its level-0 mask exactly like this.
    /// </summary>
    /// <param name="acceptance">Acceptance probabilities <c>[B, Q]</c>.</param>
    /// <param name="generator">The random source: a CPU generator (TorchSharp's only kind), whatever the tensor's device.</param>
    /// <returns>A 0/1 mask <c>[B, Q]</c> in the dtype of <paramref name="acceptance"/>.</returns>
    public static Tensor SampleMask(Tensor acceptance, Generator generator)
    {
        Guard.Matrix(acceptance, nameof(acceptance), "[B, Q]");
        ArgumentNullException.ThrowIfNull(generator);
        using var outer = NewDisposeScope();
        using var noGrad = no_grad();
        // Explicit scalars, alive for every call that reads them (no implicitly converted temporaries).
        using var zero = 0.0.ToScalar();
        using var ceiling = MaxAcceptance.ToScalar();
        using var unit = 1.0.ToScalar();
        using var one = 1.ToScalar();
        var reject = acceptance.detach().clamp(zero, ceiling).neg_().add_(unit, one).contiguous();
        var (masks, _) = BernoulliRows.Sample([new ThresholdTable(reject, null)], acceptance.shape[0], generator);
        return masks[0].to(acceptance.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Writes the cache entries of keys <c>[M, d]</c> into slots slot … slot + M − 1 (wrapping at Q): their
    /// log-normalisers into <paramref name="logNormalisers"/> <c>[Q]</c> and the rejection thresholds max(p_l(c | z), 1e-3)
    /// of every prototype c into column j of <paramref name="table"/> <c>[k_l, Q]</c>. One <c>[k_l, d] × [d, m]</c> product per
    /// chunk of keys gives the logits in the table's layout; on the CPU one C# pass per run of slots does the rest
    /// (<see cref="ThresholdColumns"/>).
    /// </summary>
    internal static void WriteCacheColumns(Tensor keys, ClusterLevel level, Tensor table, Tensor logNormalisers, long slot)
    {
        using var outer = NewDisposeScope();
        using var noGrad = no_grad();
        var k = keys.detach().to(table.dtype);
        var scaled = ScaledPrototypes(level, table.dtype);
        long rows = k.shape[0], slots = table.shape[1];
        using var floor = Math.Log(1.0 - MaxAcceptance).ToScalar();
        for (long start = 0; start < rows; start += Chunk)
        {
            using var inner = NewDisposeScope();
            long length = Math.Min(Chunk, rows - start);
            var logits = scaled.mm(k.narrow(0, start, length).t());                                 // [k_l, m]
            for (long written = 0; written < length;)
            {
                long at = (slot + start + written) % slots;
                long run = Math.Min(length - written, slots - at);
                var part = logits.narrow(1, written, run);
                if (ThresholdColumns.OnHost(part, table, logNormalisers))
                {
                    ThresholdColumns.Write(part, table, logNormalisers, at);
                }
                else
                {
                    var logZ = part.logsumexp(0);                                                   // [run]
                    logNormalisers.narrow(0, at, run).copy_(logZ);
                    table.narrow(1, at, run).copy_(part.sub(logZ.unsqueeze(0)).clamp_min_(floor).exp_());
                }

                written += run;
            }
        }
    }

    /// <summary>C_l / max(φ_l, 1e-3) in <paramref name="dtype"/>, <c>[k_l, d]</c>.</summary>
    internal static Tensor ScaledPrototypes(ClusterLevel level, ScalarType dtype)
    {
        using var floor = MinConcentration.ToScalar(); // explicit and alive: no implicitly converted Scalar temporary
        return level.Prototypes.to(dtype).div(level.Concentrations.to(dtype).clamp_min(floor).unsqueeze(1));
    }

    /// <summary>log p_l(labels[n] | queue[j]) = queue[j]·C[y_n]/φ̃(y_n) − logZ[j], <c>[B, Q]</c>, one GEMM with the normaliser as its bias.</summary>
    internal static Tensor LogMembership(Tensor queue, Tensor labels, ClusterLevel level, Tensor logNormalisers)
    {
        var numerators = ScaledPrototypes(level, queue.dtype).index_select(0, labels); // [B, d]
        var bias = logNormalisers.to(queue.dtype).neg().unsqueeze(0);                    // [1, Q]
        return addmm(bias, numerators, queue.t(), 1f, 1f);                                     // [B, Q]
    }
}
