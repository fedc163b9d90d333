using Hcsc.Core.Hierarchy;
using Hcsc.Losses.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Losses;

/// <summary>
/// PCSC's acceptance-rejection sampler (docs/method.md §4). The candidate negatives of level l are the
/// prototypes that are not the positive c⁺_n = a_l(idx_n) of any query in the batch. Below the top
/// level, candidate c is kept for query n with probability
/// <code>
///   φ'_{l+1}      = τ · φ_{l+1} / mean(φ_{l+1})
///   accept[n, c]  = 1 − softmax_p( S_l[c, p] / φ'_{l+1}(p) ) at p = parent_l(c⁺_n)
///   mask[n, c]    ~ Bernoulli( clamp(accept[n, c], 1e-4, 0.999) )   (non-candidates: 0)
/// </code>
/// with S_l = C_l · C_{l+1}ᵀ; at the top level every candidate is kept. The softmax's normaliser
/// depends only on the hierarchy (<see cref="ParentLogNormalisers"/>), so it can be computed once per
/// hierarchy and passed in. Everything here runs without gradient.
/// </summary>
public static class PrototypeSelector
{
    /// <summary>Acceptance probabilities are clamped to at least this value before sampling.</summary>
    public const double MinAcceptance = 1e-4;

    /// <summary>Acceptance probabilities are clamped to at most this value before sampling.</summary>
    public const double MaxAcceptance = 0.999;

    /// <summary>
    /// The candidate negative prototypes of a level: every prototype that is not the positive of a query
    /// in the batch. With <paramref name="reproduceReferenceOffByOne"/> (docs/method.md R3) the candidates are
    /// <c>range(max_i a_l(i))</c> minus the positives, as in the reference code, so the prototype with the
    /// largest assigned id is never a candidate.
    /// </summary>
    /// <param name="labels">Positive prototypes c⁺ <c>[B]</c> int64 in [0, k_l).</param>
    /// <param name="level">The cluster level l.</param>
    /// <param name="reproduceReferenceOffByOne">Reproduce the reference's off-by-one (docs/method.md R3); false is the fixed behaviour.</param>
    /// <returns>A bool mask <c>[k_l]</c>, true for candidates.</returns>
    public static Tensor Candidates(Tensor labels, ClusterLevel level, bool reproduceReferenceOffByOne)
    {
        Guard.Labels(labels, nameof(labels));
        ArgumentNullException.ThrowIfNull(level);
        Guard.SameDevice(labels, nameof(labels), level.Prototypes, $"level {level.Index} prototypes");
        Guard.Range(labels, nameof(labels), level.ClusterCount, $"level {level.Index} has {level.ClusterCount} prototypes", force: false);
        return CandidateMask(labels, level, reproduceReferenceOffByOne ? level.Assignments.max() : null);
    }

    /// <summary>
    /// logsumexp over parents p of S_l[c, p] / φ'_{l+1}(p) for every prototype c of <paramref name="level"/>.
    /// </summary>
    /// <param name="level">Level l (not the top).</param>
    /// <param name="parentLevel">Level l + 1.</param>
    /// <param name="temperature">τ, used to rescale the parents' concentrations.</param>
    /// <returns><c>[k_l]</c>, in the dtype of the level's prototypes.</returns>
    public static Tensor ParentLogNormalisers(ClusterLevel level, ClusterLevel parentLevel, double temperature)
    {
        CheckPair(level, parentLevel, temperature);
        using var outer = NewDisposeScope();
        using var noGrad = no_grad();
        var similarity = level.SimilarityToParents!;
        return similarity.div(RescaledParentConcentrations(parentLevel, temperature, similarity.dtype)).logsumexp(1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// accept[n, c] = 1 − softmax_p(S_l[c, p] / φ'_{l+1}(p)) at p = parent_l(labels[n]), unclamped, for every
    /// prototype c (candidates or not).
    /// </summary>
    /// <param name="labels">Positive prototypes c⁺ <c>[B]</c> int64 in [0, k_l).</param>
    /// <param name="level">Level l (not the top).</param>
    /// <param name="parentLevel">Level l + 1.</param>
    /// <param name="temperature">τ.</param>
    /// <param name="parentLogNormalisers">Optional cached <see cref="ParentLogNormalisers"/>; null computes them.</param>
    /// <returns><c>[B, k_l]</c> in the dtype of the level's prototypes.</returns>
    public static Tensor AcceptanceProbabilities(Tensor labels, ClusterLevel level, ClusterLevel parentLevel, double temperature, Tensor? parentLogNormalisers = null)
    {
        CheckPair(level, parentLevel, temperature);
        Guard.Labels(labels, nameof(labels));
        Guard.SameDevice(labels, nameof(labels), level.Prototypes, $"level {level.Index} prototypes");
        Guard.Range(labels, nameof(labels), level.ClusterCount, $"level {level.Index} has {level.ClusterCount} prototypes", force: false);
        if (parentLogNormalisers is not null)
        {
            Guard.Vector(parentLogNormalisers, nameof(parentLogNormalisers), level.ClusterCount);
        }

        using var outer = NewDisposeScope();
        using var noGrad = no_grad();
        var logZ = parentLogNormalisers ?? ParentLogNormalisers(level, parentLevel, temperature);
        return AcceptanceForLabels(labels, level, parentLevel, temperature, logZ).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Draws the selection mask: for candidates, mask[n, c] = 1 with probability clamp(accept[n, c], 1e-4, 0.999)
    /// (one u ∈ [0, 1) per entry: kept ⇔ u &gt; 1 − clamp(accept)); non-candidates are 0. The uniforms are drawn as in
    /// <see cref="InstanceSelector.SampleMask"/> (per-row streams under one seed from the generator on the CPU).
    /// </summary>
    /// <param name="acceptance">Acceptance probabilities <c>[B, k]</c>.</param>
    /// <param name="candidates">Bool candidate mask <c>[k]</c> (see <see cref="Candidates"/>).</param>
    /// <param name="generator">The random source.</param>
    /// <returns>A 0/1 mask <c>[B, k]</c> in the dtype of <paramref name="acceptance"/>.</returns>
    public static Tensor SampleMask(Tensor acceptance, Tensor candidates, Generator generator)
    {
        Guard.Matrix(acceptance, nameof(acceptance), "[B, k]");
        ArgumentNullException.ThrowIfNull(candidates);
        ArgumentNullException.ThrowIfNull(generator);
        if (candidates.dim() != 1 || candidates.dtype != ScalarType.Bool || candidates.shape[0] != acceptance.shape[1])
        {
            throw new ArgumentException(
                $"{nameof(candidates)} must be a 1-D bool tensor [{acceptance.shape[1]}] matching {nameof(acceptance)} {Core.Tensors.TensorDescription.Describe(acceptance)}; got {Core.Tensors.TensorDescription.Describe(candidates)}.",
                nameof(candidates));
        }

        using var outer = NewDisposeScope();
        var thresholds = new ThresholdTable(RejectThresholds(acceptance.detach()).contiguous(), null);
        return SampleFromThresholds(thresholds, acceptance.shape[0], candidates, generator).to(acceptance.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The candidate prototypes, bool <c>[k_l]</c>: every prototype but the batch's positives <paramref name="labels"/>, and
    /// only ids below <paramref name="offByOneBound"/> when given (docs/method.md R3). <see cref="Candidates"/> without its checks.
    /// </summary>
    internal static Tensor CandidateMask(Tensor labels, ClusterLevel level, Tensor? offByOneBound)
    {
        // Explicit scalars, alive for every call that reads them (no implicitly converted temporaries).
        using var no = false.ToScalar();
        var candidates = ones(level.ClusterCount, dtype: ScalarType.Bool, device: labels.device);
        candidates.index_fill_(0, labels, no);
        if (offByOneBound is not null)
        {
            // arange(start, stop, step): arange(stop) would make implicit ones itself.
            using var start = 0.ToScalar();
            using var stop = level.ClusterCount.ToScalar();
            using var step = 1.ToScalar();
            candidates.logical_and_(arange(start, stop, step, dtype: ScalarType.Int64, device: labels.device).lt(offByOneBound));
        }

        return candidates;
    }

    /// <summary>The acceptance probabilities <c>[B, k_l]</c> for positives <paramref name="labels"/>, through their parents (<see cref="AcceptanceGivenParents"/>).</summary>
    internal static Tensor AcceptanceForLabels(Tensor labels, ClusterLevel level, ClusterLevel parentLevel, double temperature, Tensor parentLogNormalisers) =>
        AcceptanceGivenParents(level.Parents!.index_select(0, labels), level, parentLevel, temperature, parentLogNormalisers);

    /// <summary>accept[n, c] = 1 − softmax_p(S_l[c, p] / φ'_{l+1}(p)) at p = parents[n], <c>[B, k_l]</c> for parents <c>[B]</c>.</summary>
    internal static Tensor AcceptanceGivenParents(Tensor parents, ClusterLevel level, ClusterLevel parentLevel, double temperature, Tensor parentLogNormalisers)
    {
        var similarity = level.SimilarityToParents!;                                   // [k_l, k_{l+1}]
        var scale = RescaledParentConcentrations(parentLevel, temperature, similarity.dtype).index_select(0, parents); // [B]
        var logP = similarity.index_select(1, parents).div(scale).sub(parentLogNormalisers.to(similarity.dtype).unsqueeze(1)); // [k_l, B]
        using var unit = 1.0.ToScalar(); // explicit scalar and alpha: add_(Scalar) would make an implicit alpha 1 itself
        using var one = 1.ToScalar();
        return logP.exp_().neg_().add_(unit, one).t();                                 // [B, k_l]
    }

    /// <summary>The rejection thresholds 1 − clamp(accept, 1e-4, 0.999): an entry is kept when its uniform exceeds them.</summary>
    internal static Tensor RejectThresholds(Tensor acceptance)
    {
        // Explicit scalars, alive for every call that reads them (no implicitly converted temporaries).
        using var floor = MinAcceptance.ToScalar();
        using var ceiling = MaxAcceptance.ToScalar();
        using var unit = 1.0.ToScalar();
        using var one = 1.ToScalar();
        return acceptance.clamp(floor, ceiling).neg_().add_(unit, one);
    }

    /// <summary>The mask drawn against <paramref name="thresholds"/>, restricted to the candidates, bool <c>[B, k]</c>.</summary>
    internal static Tensor SampleFromThresholds(ThresholdTable thresholds, long rows, Tensor candidates, Generator generator)
    {
        using var noGrad = no_grad();
        var (masks, _) = BernoulliRows.Sample([thresholds], rows, generator);
        return masks[0].logical_and_(candidates.unsqueeze(0));
    }

    private static Tensor RescaledParentConcentrations(ClusterLevel parentLevel, double temperature, ScalarType dtype)
    {
        var phi = parentLevel.Concentrations.to(dtype);
        using var tau = temperature.ToScalar(); // explicit and alive: no implicitly converted Scalar temporary
        return phi.mul(tau).div(phi.mean());
    }

    private static void CheckPair(ClusterLevel level, ClusterLevel parentLevel, double temperature)
    {
        ArgumentNullException.ThrowIfNull(level);
        ArgumentNullException.ThrowIfNull(parentLevel);
        Guard.Temperature(temperature, nameof(temperature));
        if (level.SimilarityToParents is null || level.Parents is null || parentLevel.Index != level.Index + 1 || level.SimilarityToParents.shape[1] != parentLevel.ClusterCount)
        {
            throw new ArgumentException(
                $"prototype selection needs a level below the top and the level just above it; got level {level.Index} ({level.ClusterCount} prototypes) and level {parentLevel.Index} ({parentLevel.ClusterCount} prototypes).",
                nameof(parentLevel));
        }
    }
}
