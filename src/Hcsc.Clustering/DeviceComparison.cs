using TorchSharp;

namespace Hcsc.Clustering;

/// <summary>Device equality by type and index (TorchSharp's Device compares by reference).</summary>
internal static class DeviceComparison
{
    public static bool SameDevice(torch.Tensor a, torch.Tensor b) => a.device.type == b.device.type && a.device.index == b.device.index;
}
