using Hcsc.Core.Options;
using Hcsc.Losses.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Losses;

/// <summary>
/// The instance terms of one query view against its key and the queue: per-sample InfoNCE, and per level the ICSC
/// cross-entropy under the level's mask (docs/method.md §1, §3 and R1). On the CPU one C# pass over the logits does all of them
/// (<see cref="QueueCrossEntropy"/>); elsewhere each term is a log-sum-exp of its own (<see cref="SelectiveCrossEntropy"/>).
/// Both give the same values.
/// </summary>
internal static class InstanceContrast
{
    /// <param name="query">Queries <c>[B, d]</c>, with gradient.</param>
    /// <param name="key">Detached keys <c>[B, d]</c>.</param>
    /// <param name="queueTransposed">Detached queue, transposed, <c>[d, Q]</c>.</param>
    /// <param name="temperature">τ.</param>
    /// <param name="masks">ICSC masks <c>[L, B, Q]</c> bool, or null for InfoNCE alone.</param>
    /// <param name="handling">How unselected negatives enter the softmax (docs/method.md R1).</param>
    /// <returns>InfoNCE <c>[B]</c>, ICSC <c>[B, L]</c> (null without masks), and top-1 (x_p ≥ every negative logit) <c>[B]</c> bool.</returns>
    public static (Tensor InfoNce, Tensor? Selected, Tensor Top1) Compute(
        Tensor query, Tensor key, Tensor queueTransposed, double temperature, Tensor? masks, UnselectedNegativeHandling handling)
    {
        using var inverseTemperature = (1.0 / temperature).ToScalar();
        var scaled = query.mul(inverseTemperature);                         // [B, d]
        var positive = scaled.mul(key).sum(1);                               // [B]
        var logits = scaled.mm(queueTransposed);                             // [B, Q]
        if (QueueCrossEntropy.OnHost(query))
        {
            var (loss, top1) = QueueCrossEntropy.Compute(logits, positive, masks, handling == UnselectedNegativeHandling.ZeroLogit);
            return (loss.select(1, 0), masks is null ? null : loss.narrow(1, 1, masks.shape[0]), top1);
        }

        // Any device: each term is a log-sum-exp over [x_p, X] with its own exact shift.
        var (infoNce, instanceTop1) = SelectiveCrossEntropy.PerSample(positive, logits, ones_like(logits, dtype: ScalarType.Bool), null, handling);
        Tensor? selected = null;
        if (masks is not null)
        {
            var levels = new Tensor[masks.shape[0]];
            for (int l = 0; l < levels.Length; l++)
            {
                levels[l] = SelectiveCrossEntropy.PerSample(positive, logits, masks[l], null, handling).Loss;
            }

            selected = stack(levels, 1);                                     // [B, L]
        }

        return (infoNce, selected, instanceTop1);
    }
}
