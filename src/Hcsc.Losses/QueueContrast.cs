using Hcsc.Core.Options;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Losses;

/// <summary>
/// The instance logits of one query view against its key and the queue, kept in exponentiated form so
/// that the masked cross-entropies of all levels cost one masked row sum over E (no per-level copy of
/// the logits, one backward pass for all levels):
/// <code>
///   x_pos[n] = q_n·k_n/τ,  X[n, j] = q_n·z_j/τ,  M[n] = max(x_pos[n], max_j X[n, j], 0)   (a detached shift)
///   E = exp(X − M),  e_pos = exp(x_pos − M),  e_0 = exp(−M)
///   CE_n(mask) = log( e_pos + Σ_j mask·E + [R1 zero logits] (Q − Σ_j mask)·e_0 ) + M − x_pos
/// </code>
/// which equals CE([x_pos, X ⊙ mask (or excluded)], 0) exactly; M cancels, so it carries no gradient.
/// With the exact row max every exponent is ≤ 0 and the largest term is 1, so nothing overflows or
/// underflows entirely, whatever τ and the embeddings' norms. This is the tensor-operation path (any device);
/// on the CPU <see cref="Kernels.QueueCrossEntropy"/> computes the same in one pass.
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

    /// <param name="query">Queries <c>[B, d]</c>.</param>
    /// <param name="key">Detached keys <c>[B, d]</c>.</param>
    /// <param name="queueTransposed">Detached queue, transposed, <c>[d, Q]</c>.</param>
    /// <param name="temperature">τ.</param>
    public static QueueContrast Create(Tensor query, Tensor key, Tensor queueTransposed, double temperature)
    {
        // Scalars are explicit and kept alive to the end of the call: an implicit Scalar temporary can be
        // finalised by the GC while libtorch still reads it.
        using var inverseTemperature = (1.0 / temperature).ToScalar();
        using var zero = 0.0.ToScalar();
        var scaled = query.mul(inverseTemperature);                       // [B, d]
        var positive = scaled.mul(key).sum(1);                             // [B]
        var logits = scaled.mm(queueTransposed);                           // [B, Q]
        Tensor shift, expZero, top1;
        using (no_grad())
        {
            var maxNegative = logits.amax(1);                              // [B]
            top1 = positive.ge(maxNegative);
            shift = maximum(maxNegative, positive).clamp_min(zero);
            expZero = shift.neg().exp();
        }

        // mm does not keep its output for backward, so the shift and exp can run in place.
        var exp = logits.sub_(shift.unsqueeze(1)).exp_();                  // [B, Q]
        var expPositive = positive.sub(shift).exp();                       // [B]
        return new QueueContrast(positive, shift, exp, expPositive, expZero, top1, queueTransposed.shape[1]);
    }

    /// <summary>Per-sample InfoNCE with every negative, <c>[B]</c>.</summary>
    public Tensor InfoNce() => ExpPositive.add(Exp.sum(1)).log().add(Shift).sub(Positive);

    /// <summary>Per-sample, per-level ICSC for bool masks <c>[L, B, Q]</c> and their row sums <c>[B, L]</c>; returns <c>[B, L]</c>.</summary>
    public Tensor Selected(Tensor masks, Tensor keptCount, UnselectedNegativeHandling handling)
    {
        var kept = masks.to(Exp.dtype).permute(1, 0, 2).bmm(Exp.unsqueeze(2)).squeeze(2);   // [B, L] = Σ_j mask·E, one pass for all levels
        var denominator = kept.add(ExpPositive.unsqueeze(1));
        if (handling == UnselectedNegativeHandling.ZeroLogit)
        {
            using var queueLength = QueueLength.ToScalar();
            denominator = denominator.add(keptCount.neg().add(queueLength).mul(ExpZero.unsqueeze(1)));
        }

        return denominator.log().add(Shift.sub(Positive).unsqueeze(1));
    }
}
