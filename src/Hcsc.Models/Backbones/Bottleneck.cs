using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Hcsc.Models.Backbones;

/// <summary>
/// torchvision's <c>Bottleneck</c> (ResNet v1.5, stride on the 3×3 convolution): conv1×1 → BN → ReLU →
/// conv3×3 → BN → ReLU → conv1×1 → BN, plus the (optionally down-sampled) input, then ReLU.
/// Input [B, inplanes, H, W] → output [B, 4·planes, H/stride, W/stride].
/// </summary>
public sealed class Bottleneck : Module<Tensor, Tensor>
{
    /// <summary>Output channels relative to <c>planes</c>.</summary>
    public const int Expansion = 4;

    private readonly Module<Tensor, Tensor> conv1;
    private readonly Module<Tensor, Tensor> bn1;
    private readonly Module<Tensor, Tensor> conv2;
    private readonly Module<Tensor, Tensor> bn2;
    private readonly Module<Tensor, Tensor> conv3;
    private readonly Module<Tensor, Tensor> bn3;
    private readonly Module<Tensor, Tensor> relu;
    private readonly Module<Tensor, Tensor>? downsample;

    /// <summary>Creates the block.</summary>
    /// <param name="inplanes">Input channels.</param>
    /// <param name="planes">Inner channels; the block outputs 4·planes.</param>
    /// <param name="stride">Stride of the 3×3 convolution (and of the shortcut).</param>
    /// <param name="downsample">Shortcut projection (<c>Sequential</c> of 1×1 conv "0" and norm "1"), or <c>null</c> for the identity.</param>
    /// <param name="normLayer">Builds a normalisation layer for a channel count.</param>
    public Bottleneck(long inplanes, long planes, long stride, Module<Tensor, Tensor>? downsample, Func<long, Module<Tensor, Tensor>> normLayer)
        : base(nameof(Bottleneck))
    {
        conv1 = Conv2d(inplanes, planes, 1, bias: false);
        bn1 = normLayer(planes);
        conv2 = Conv2d(planes, planes, 3, stride: stride, padding: 1, bias: false);
        bn2 = normLayer(planes);
        conv3 = Conv2d(planes, planes * Expansion, 1, bias: false);
        bn3 = normLayer(planes * Expansion);
        relu = ReLU(inplace: true);
        this.downsample = downsample;
        RegisterComponents();
    }

    /// <summary>The norm layer whose weight <see cref="ResNetOptions.ZeroInitResidual"/> sets to zero.</summary>
    internal Module<Tensor, Tensor> LastNorm => bn3;

    /// <inheritdoc />
    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var identity = downsample is null ? input : downsample.forward(input);
        var x = relu.forward(bn1.forward(conv1.forward(input)));
        x = relu.forward(bn2.forward(conv2.forward(x)));
        x = bn3.forward(conv3.forward(x));
        using var one = 1.ToScalar(); // explicit alpha: add_(Tensor) would make an implicit Scalar 1 itself
        x = x.add_(identity, one);
        return relu.forward(x).MoveToOuterDisposeScope();
    }
}
