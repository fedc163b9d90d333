using Hcsc.Core.Options;
using static TorchSharp.torch;

namespace Hcsc.Losses;

/// <summary>
/// The instance logits of one query view against its key and the queue, kept in exponentiated form so
/// that the masked cross-entropies of all levels cost one batched masked row sum (no per-level copy of
/// the logits, one backward pass for all levels):
/// <code>
///   x_pos[n] = q_n·k_n/τ,  X[n, j] = q_n·z_j/τ,  M[n] ≥ max(x_pos[n], max_j X[n, j], 0)   (a detached shift)
///   E = exp(X − M),  e_pos = exp(x_pos − M),  e_0 = exp(−M)
///   CE_n(mask) = log( e_pos + Σ_j mask·E + [R1 zero logits] (Q − Σ_j mask)·e_0 ) + M − x_pos
/// </code>
/// which equals CE([x_pos, X ⊙ mask (or excluded)], 0) exactly; M cancels, so it carries no gradient.
/// M is the Cauchy–Schwarz bound ‖q_n‖·max(‖k_n‖, max_j ‖z_j‖)/τ, which needs no pass over X and can be
/// folded into the logits' GEMM; for τ &lt; 1/30 (where exp(−2/τ) could underflow) it is the exact row max.
/// </summary>
internal sealed class QueueContrast
{
    private const double BoundShiftMinTemperature = 1.0 / 30.0;

    private QueueContrast(Tensor positive, Tensor shift, Tensor exp, Tensor expPositive, Tensor expZero, Tensor top1, long queueLength)
    {
        Positive = positive;
        Shift = shift;
        Exp = exp;
        ExpPositive = expPositive;
        ExpZero = expZero;
        Top1 = top1;
        QueueLength = queueLength;
    }

    public Tensor Positive { get; }      // [B]

    public Tensor Shift { get; }         // [B], detached

    public Tensor Exp { get; }           // [B, Q]

    public Tensor ExpPositive { get; }   // [B]

    public Tensor ExpZero { get; }       // [B], detached

    public Tensor Top1 { get; }          // [B] bool: x_pos ≥ max_j X

    public long QueueLength { get; }

    /// <param name="query">Queries <c>[B, d]</c>.</param>
    /// <param name="key">Detached keys <c>[B, d]</c>.</param>
    /// <param name="queueTransposed">Detached queue, transposed, <c>[d, Q]</c>.</param>
    /// <param name="queueMaxNorm">max_j ‖z_j‖ as a scalar tensor.</param>
    /// <param name="temperature">τ.</param>
    public static QueueContrast Create(Tensor query, Tensor key, Tensor queueTransposed, Tensor queueMaxNorm, double temperature)
    {
        var scaled = query.div(temperature);                              // [B, d]
        var positive = scaled.mul(key).sum(1);                             // [B]
        Tensor shift, exp;
        if (temperature >= BoundShiftMinTemperature)
        {
            using (no_grad())
            {
                shift = scaled.detach().norm(1).mul(maximum(key.norm(1), queueMaxNorm));   // [B]
            }

            exp = addmm(shift.neg().unsqueeze(1), scaled, queueTransposed, 1f, 1f).exp_();   // [B, Q]
        }
        else
        {
            var logits = scaled.mm(queueTransposed);                                           // [B, Q]
            using (no_grad())
            {
                shift = maximum(logits.amax(1), positive).clamp_min(0.0);
            }

            exp = logits.sub(shift.unsqueeze(1)).exp_();
        }

        Tensor expZero, top1;
        var expPositive = positive.sub(shift).exp();                      // [B]
        using (no_grad())
        {
            expZero = shift.neg().exp();
            top1 = expPositive.ge(exp.amax(1));
        }

        return new QueueContrast(positive, shift, exp, expPositive, expZero, top1, queueTransposed.shape[1]);
    }

    /// <summary>Per-sample InfoNCE with every negative, <c>[B]</c>.</summary>
    public Tensor InfoNce() => ExpPositive.add(Exp.sum(1)).log().add(Shift).sub(Positive);

    /// <summary>Per-sample, per-level ICSC for 0/1 masks <c>[B, L, Q]</c> and their row sums <c>[B, L]</c>; returns <c>[B, L]</c>.</summary>
    public Tensor Selected(Tensor masks, Tensor keptCount, UnselectedNegativeHandling handling)
    {
        var kept = masks.bmm(Exp.unsqueeze(2)).squeeze(2);               // [B, L] = Σ_j mask·E, one pass for all levels
        var denominator = kept.add(ExpPositive.unsqueeze(1));
        if (handling == UnselectedNegativeHandling.ZeroLogit)
        {
            denominator = denominator.add(keptCount.neg().add(QueueLength).mul(ExpZero.unsqueeze(1)));
        }

        return denominator.log().add(Shift.sub(Positive).unsqueeze(1));
    }
}
