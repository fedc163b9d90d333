namespace Hcsc.Models.Backbones;

/// <summary>
/// How a <see cref="ResNet"/> lays out its activations [B, C, H, W] in memory. The mathematics is the same either way;
/// only float rounding and speed differ.
/// </summary>
public enum ActivationLayout
{
    /// <summary>Channels-last on the CPU, where oneDNN's and ATen's convolutions run faster on it; channels-first on other devices.</summary>
    Auto,

    /// <summary>NCHW, PyTorch's default: each channel's H×W plane is contiguous.</summary>
    ChannelsFirst,

    /// <summary>NHWC (PyTorch's <c>torch.channels_last</c>): the C values of a pixel are contiguous. Convolutions, batch norm, ReLU and the residual additions keep the layout.</summary>
    ChannelsLast,
}
