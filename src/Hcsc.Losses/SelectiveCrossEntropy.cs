using Hcsc.Core.Options;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Losses;

/// <summary>
/// Cross-entropy with target 0 over [positive, negatives] where some negatives were not selected
/// (docs/method.md §3, §4 and R1): a selected negative enters with its logit; an unselected one enters with logit 0
/// (<see cref="UnselectedNegativeHandling.ZeroLogit"/>) or not at all (<see cref="UnselectedNegativeHandling.Exclude"/>);
/// a column that is not a candidate at all never enters.
/// </summary>
internal static class SelectiveCrossEntropy
{
    /// <param name="positive">Positive logits <c>[B]</c>.</param>
    /// <param name="negatives">Negative logits <c>[B, K]</c>.</param>
    /// <param name="selected">0/1 or bool selection <c>[B, K]</c>.</param>
    /// <param name="candidates">Bool <c>[K]</c> or null (every column is a candidate).</param>
    /// <param name="handling">How unselected negatives enter the softmax (docs/method.md R1).</param>
    /// <returns>Per-sample losses <c>[B]</c> and whether the positive is the top-1 logit <c>[B]</c> (bool).</returns>
    public static (Tensor Loss, Tensor Top1) PerSample(Tensor positive, Tensor negatives, Tensor selected, Tensor? candidates, UnselectedNegativeHandling handling)
    {
        // Explicit scalars, alive for every call that reads them (no implicitly converted temporaries).
        using var half = 0.5.ToScalar();
        using var minusInfinity = double.NegativeInfinity.ToScalar();
        var keep = selected.dtype == ScalarType.Bool ? selected : selected.detach().gt(half);
        var unselected = handling == UnselectedNegativeHandling.ZeroLogit
            ? zeros(1, dtype: negatives.dtype, device: negatives.device)
            : full(1, minusInfinity, dtype: negatives.dtype, device: negatives.device);
        var logits = where(keep, negatives, unselected);
        if (candidates is not null)
        {
            logits = where(candidates.unsqueeze(0), logits, full(1, minusInfinity, dtype: negatives.dtype, device: negatives.device));
        }

        var all = cat([positive.unsqueeze(1), logits], 1);          // [B, 1 + K]
        var loss = all.logsumexp(1).sub(positive);                  // [B]
        var top1 = positive.detach().ge(logits.detach().amax(1));   // [B]
        return (loss, top1);
    }
}
