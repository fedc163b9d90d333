using static TorchSharp.torch;

namespace Hcsc.Losses.Kernels;

/// <summary>
/// Holds the managed wrappers of the gradients a custom backward pass returns, on the node's autograd context:
/// their handles go back to libtorch after the method returns, and no finaliser may release them before then.
/// </summary>
internal sealed class GradientKeepAlive(params Tensor[] gradients)
{
    public IReadOnlyList<Tensor> Gradients { get; } = gradients;
}
