using TorchSharp;

namespace Hcsc.Core.Tensors;

/// <summary>Formats tensors for error messages.</summary>
public static class TensorDescription
{
    /// <summary>Describes a tensor's shape, dtype and device, e.g. <c>shape [256, 128], Float32 on cpu</c>.</summary>
    public static string Describe(this torch.Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        return $"shape [{string.Join(", ", tensor.shape)}], {tensor.dtype} on {tensor.device}";
    }
}
