using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Hcsc.Models.Heads;

/// <summary>
/// The projection head of MoCo v2 / HCSC, which takes the place of the ResNet's <c>fc</c>:
/// with an MLP, <c>Sequential("0": Linear(F, F), "1": ReLU, "2": Linear(F, d))</c>; without, <c>Linear(F, d)</c>.
/// Input [B, F] (pooled features) → output [B, d] (not yet normalised).
/// </summary>
public static class ProjectionHead
{
    /// <summary>Builds the head.</summary>
    /// <param name="featureDim">F, the backbone's pooled feature size (2048 for ResNet-50).</param>
    /// <param name="dim">d, the embedding size (128 by default).</param>
    /// <param name="mlp">Two layers with a ReLU (MoCo v2) rather than one linear layer (MoCo v1).</param>
    public static Module<Tensor, Tensor> Create(long featureDim, long dim, bool mlp)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(featureDim, 1L);
        ArgumentOutOfRangeException.ThrowIfLessThan(dim, 1L);
        if (!mlp)
        {
            return Linear(featureDim, dim);
        }

        return Sequential(
            ("0", (Module<Tensor, Tensor>)Linear(featureDim, featureDim)),
            ("1", ReLU()),
            ("2", Linear(featureDim, dim)));
    }
}
