using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Models.Backbones;

/// <summary>
/// How to build a <see cref="ResNet"/>. The defaults give torchvision's ResNet exactly
/// (ImageNet stem, base width 64, 1000 classes), so its state dict moves to and from PyTorch unchanged.
/// </summary>
public sealed record ResNetOptions
{
    /// <summary>Architecture: <c>resnet18</c>, <c>resnet34</c>, <c>resnet50</c>, <c>resnet101</c> or <c>resnet152</c> (case-insensitive).</summary>
    public string Arch { get; init; } = "resnet50";

    /// <summary>Channels of the input images, C in [B, C, H, W]: 3 for RGB, 1 for grey images.</summary>
    public int InputChannels { get; init; } = 3;

    /// <summary>
    /// <c>false</c>: the ImageNet stem (7×7 stride-2 convolution, 3×3 stride-2 max-pool), for inputs of about 224 px.
    /// <c>true</c>: the small-image stem (3×3 stride-1 convolution, no max-pool), for 28–64 px inputs.
    /// </summary>
    public bool SmallImageStem { get; init; }

    /// <summary>
    /// Channels of the stem and of <c>layer1</c>'s blocks (64 in torchvision); <c>layer2</c>–<c>layer4</c> use 2×, 4× and 8× this.
    /// 16 or 32 give CPU-scale networks with the same structure and parameter names.
    /// </summary>
    public int BaseWidth { get; init; } = 64;

    /// <summary>Initialise the last BN of every residual block with weight 0, so each block starts as the identity (torchvision's <c>zero_init_residual</c>).</summary>
    public bool ZeroInitResidual { get; init; }

    /// <summary>Outputs of the classifier <c>fc</c> (1000 in torchvision). 0 leaves <c>fc</c> as the identity: <c>forward</c> then returns the pooled features.</summary>
    public int NumClasses { get; init; } = 1000;

    /// <summary>
    /// Builds the normalisation layer for a given number of channels; <c>null</c> means batch norm (<see cref="Normalization.SplitBatchNorm2d"/> with one split, which is <c>BatchNorm2d</c>).
    /// The layer's parameters and buffers should be named like <c>BatchNorm2d</c>'s for checkpoints to cross to PyTorch.
    /// </summary>
    public Func<long, nn.Module<Tensor, Tensor>>? NormLayer { get; init; }

    /// <summary>
    /// Memory layout of the activations (<see cref="ActivationLayout.Auto"/>: channels-last on the CPU, channels-first
    /// elsewhere). The input is laid out so on entry to <see cref="ResNet.Features"/>; parameters and their gradients
    /// keep PyTorch's layout, so state dicts and packed parameters are unaffected.
    /// </summary>
    public ActivationLayout Layout { get; init; } = ActivationLayout.Auto;

    /// <summary>Checks the options and returns every problem found (empty when the options are valid).</summary>
    public IReadOnlyList<string> Validate()
    {
        var problems = new List<string>();
        if (!ResNetArchitectures.TryGet(Arch, out _))
        {
            problems.Add($"Arch '{Arch}' is not known. Use one of: {string.Join(", ", ResNetArchitectures.Names)}.");
        }

        if (InputChannels < 1)
        {
            problems.Add($"InputChannels must be at least 1 (got {InputChannels}).");
        }

        if (BaseWidth < 1)
        {
            problems.Add($"BaseWidth must be at least 1 (got {BaseWidth}).");
        }

        if (!Enum.IsDefined(Layout))
        {
            problems.Add($"Layout {(int)Layout} is not an ActivationLayout; use Auto, ChannelsFirst or ChannelsLast.");
        }

        if (NumClasses < 0)
        {
            problems.Add($"NumClasses must be 0 (no classifier) or more (got {NumClasses}).");
        }

        return problems;
    }
}
