using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>
/// How spread out a batch of L2-normalised embeddings is: s = 1 − ‖mean_n q_n‖², the total variance of the unit
/// vectors q_n (s = Σ_j Var_n(q_nj), since ‖q_n‖ = 1). s is near 1 when the embeddings point every way, and 0 when every
/// image gets the same embedding: the collapse that a contrastive loss cannot leave (all logits equal, the loss stuck at
/// ln(1 + Q)) and that the instance accuracy hides, because a tie with the positive counts as a hit.
/// </summary>
public static class EmbeddingSpread
{
    /// <summary>
    /// The epoch mean below which the sample warns that the embeddings have collapsed. An untrained network already gives
    /// aligned embeddings (0.01–0.05 measured on the synthetic data and Fashion-MNIST); a collapsing Fashion-MNIST run
    /// (key encoder momentum 0.9) gave 0.0002 in its second epoch.
    /// </summary>
    public const double CollapseThreshold = 1e-3;

    /// <summary>s of <paramref name="embeddings"/> [B, d] (rows of unit length), a scalar tensor on their device; no gradient.</summary>
    public static Tensor Of(Tensor embeddings)
    {
        using var scope = NewDisposeScope();
        using var one = 1.0.ToScalar();
        var mean = embeddings.detach().mean([0]);
        return mean.dot(mean).neg().add_(one, alpha: one).MoveToOuterDisposeScope();
    }

    /// <summary>The warning for an epoch whose mean spread is <paramref name="spread"/>, or null when it is not collapsed.</summary>
    public static string? CollapseWarning(int epoch, double spread) => spread >= CollapseThreshold ? null :
        $"warning: epoch {epoch}: the embeddings have collapsed: their spread 1 − ‖mean q‖² is {spread:F4} (near 1 when images get " +
        "different embeddings, 0 when all get the same), so the loss cannot fall and the instance accuracy means nothing (ties count as hits). " +
        "Lower the learning rate (--lr) or raise the key encoder's momentum (--m), then start again or resume from a checkpoint before the collapse.";
}
