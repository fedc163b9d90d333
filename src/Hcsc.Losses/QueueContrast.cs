using Hcsc.Core.Options;
using static TorchSharp.torch;

namespace Hcsc.Losses;

/// <summary>
/// The instance logits of one query view against its key and the queue, kept in exponentiated form so
/// that every level's masked cross-entropy costs one masked row sum (no per-level copy of the logits):
/// <code>
///   x_pos[n] = q_n·k_n/τ,  X[n, j] = q_n·z_j/τ,  M[n] = max(x_pos[n], max_j X[n, j], 0)   (detached)
///   E = exp(X − M),  e_pos = exp(x_pos − M),  e_0 = exp(−M)
///   CE_n(mask) = log( e_pos + Σ_j mask·E + [R1 zero logits] (Q − Σ_j mask)·e_0 ) + M − x_pos
/// </code>
/// which equals CE([x_pos, X ⊙ mask (or excluded)], 0) exactly; M cancels, so it carries no gradient.
/// </summary>
internal sealed class QueueContrast
{
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

    public static QueueContrast Create(Tensor query, Tensor key, Tensor queueTransposed, double temperature)
    {
        var scaled = query.div(temperature);                              // [B, d]
        var positive = scaled.mul(key).sum(1);                             // [B]
        var logits = scaled.mm(queueTransposed);                           // [B, Q]
        Tensor shift, top1, expZero;
        using (no_grad())
        {
            var maxNegative = logits.amax(1);                              // [B]
            top1 = positive.ge(maxNegative);
            shift = maximum(maxNegative, positive).clamp_min(0.0);
            expZero = shift.neg().exp();
        }

        var exp = logits.sub(shift.unsqueeze(1)).exp_();                   // [B, Q]
        var expPositive = positive.sub(shift).exp();                       // [B]
        return new QueueContrast(positive, shift, exp, expPositive, expZero, top1, queueTransposed.shape[1]);
    }

    /// <summary>Per-sample InfoNCE with every negative, <c>[B]</c>.</summary>
    public Tensor InfoNce() => ExpPositive.add(Exp.sum(1)).log().add(Shift).sub(Positive);

    /// <summary>Per-sample ICSC with a 0/1 mask <c>[B, Q]</c> and its row sums <c>[B]</c>.</summary>
    public Tensor Selected(Tensor mask, Tensor keptCount, UnselectedNegativeHandling handling)
    {
        long b = mask.shape[0];
        var kept = Exp.unsqueeze(1).bmm(mask.unsqueeze(2)).view(b);      // [B] = Σ_j mask·E
        var denominator = ExpPositive.add(kept);
        if (handling == UnselectedNegativeHandling.ZeroLogit)
        {
            denominator = denominator.add(keptCount.neg().add(QueueLength).mul(ExpZero));
        }

        return denominator.log().add(Shift).sub(Positive);
    }
}
