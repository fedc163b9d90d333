using TorchSharp;

namespace Hcsc.Core.Tensors;

/// <summary>Device equality by type and index; TorchSharp's <see cref="torch.Device"/> compares by reference.</summary>
public static class DeviceEquality
{
    /// <summary>True when <paramref name="a"/> and <paramref name="b"/> are the same device (e.g. both cpu, or both cuda:1).</summary>
    public static bool SameDevice(torch.Device a, torch.Device b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        return a.type == b.type && a.index == b.index;
    }

    /// <summary>True when the two tensors live on the same device.</summary>
    public static bool SameDevice(torch.Tensor a, torch.Tensor b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        return SameDevice(a.device, b.device);
    }
}
