using Hcsc.Core.Hierarchy;
using Hcsc.Core.Options;
using Hcsc.Core.Tensors;
using static TorchSharp.torch;

namespace Hcsc.Losses;

/// <summary>
/// The PCSC loss of one level (docs/method.md §4) for a given prototype selection (drawn by
/// <see cref="PrototypeSelector.SampleMask"/>, or your own):
/// <code>
///   logits[n] = [ q_n · C_l[c⁺_n] / φ_l(c⁺_n),  q_n · C_l[c] / φ_l(c) for selected candidates c ]
///   PCSC      = mean_n CE(logits[n], target 0)
/// </code>
/// Non-candidates never enter; a candidate that is not selected enters with logit 0
/// (<see cref="UnselectedNegativeHandling.ZeroLogit"/>, docs/method.md R1) or not at all (<see cref="UnselectedNegativeHandling.Exclude"/>).
/// Gradients flow into <c>query</c> only (prototypes and concentrations are constants).
/// </summary>
public static class PcscLoss
{
    /// <summary>Computes the PCSC loss of one level.</summary>
    /// <param name="query">L2-normalised queries q <c>[B, d]</c>, with gradient.</param>
    /// <param name="labels">Positive prototypes c⁺ = a_l(idx) <c>[B]</c> int64 in [0, k_l).</param>
    /// <param name="level">The cluster level l (prototypes C_l <c>[k_l, d]</c>, concentrations φ_l <c>[k_l]</c>).</param>
    /// <param name="mask">Selection <c>[B, k_l]</c>: bool or 0/1 (1 = selected; only candidates count).</param>
    /// <param name="candidates">Bool candidate mask <c>[k_l]</c> (<see cref="PrototypeSelector.Candidates"/>).</param>
    /// <param name="handling">How unselected candidates enter the softmax (docs/method.md R1).</param>
    /// <returns>The mean loss, a scalar.</returns>
    public static Tensor Compute(Tensor query, Tensor labels, ClusterLevel level, Tensor mask, Tensor candidates, UnselectedNegativeHandling handling)
    {
        Guard.Matrix(query, nameof(query), "[B, d]");
        Guard.Level(level, query, nameof(query));
        Guard.Indices(labels, nameof(labels), query.shape[0]);
        Guard.SameDevice(labels, nameof(labels), query, nameof(query));
        Guard.Range(labels, nameof(labels), level.ClusterCount, $"level {level.Index} has {level.ClusterCount} prototypes", force: false);
        ArgumentNullException.ThrowIfNull(mask);
        ArgumentNullException.ThrowIfNull(candidates);
        if (mask.dim() != 2 || mask.shape[0] != query.shape[0] || mask.shape[1] != level.ClusterCount)
        {
            throw new ArgumentException($"{nameof(mask)} must be [B, k_l] = [{query.shape[0]}, {level.ClusterCount}]; got {mask.Describe()}.", nameof(mask));
        }

        if (candidates.dim() != 1 || candidates.dtype != ScalarType.Bool || candidates.shape[0] != level.ClusterCount)
        {
            throw new ArgumentException($"{nameof(candidates)} must be a 1-D bool tensor [{level.ClusterCount}]; got {candidates.Describe()}.", nameof(candidates));
        }

        using var scope = NewDisposeScope();
        var (loss, _) = PerSample(query, labels, level, mask, candidates, handling);
        return loss.mean().MoveToOuterDisposeScope();
    }

    internal static (Tensor Loss, Tensor Top1) PerSample(Tensor query, Tensor labels, ClusterLevel level, Tensor mask, Tensor candidates, UnselectedNegativeHandling handling)
    {
        var scaled = level.Prototypes.to(query.dtype).div(level.Concentrations.to(query.dtype).unsqueeze(1)); // [k, d]
        var logits = query.mm(scaled.t());                                                                    // [B, k]
        var positive = logits.gather(1, labels.unsqueeze(1)).squeeze(1);                                      // [B]
        return SelectiveCrossEntropy.PerSample(positive, logits, mask, candidates, handling);
    }
}
