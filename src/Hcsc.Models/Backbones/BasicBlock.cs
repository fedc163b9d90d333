using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Hcsc.Models.Backbones;

/// <summary>
/// torchvision's <c>BasicBlock</c>: conv3×3 → BN → ReLU → conv3×3 → BN, plus the (optionally down-sampled)
/// input, then ReLU. Input [B, inplanes, H, W] → output [B, planes, H/stride, W/stride].
/// </summary>
public sealed class BasicBlock : Module<Tensor, Tensor>
{
    private readonly Module<Tensor, Tensor> conv1;
    private readonly Module<Tensor, Tensor> bn1;
    private readonly Module<Tensor, Tensor> relu;
    private readonly Module<Tensor, Tensor> conv2;
    private readonly Module<Tensor, Tensor> bn2;
    private readonly Module<Tensor, Tensor>? downsample;

    /// <summary>Creates the block.</summary>
    /// <param name="inplanes">Input channels.</param>
    /// <param name="planes">Output channels.</param>
    /// <param name="stride">Stride of the first convolution (and of the shortcut).</param>
    /// <param name="downsample">Shortcut projection (<c>Sequential</c> of 1×1 conv "0" and norm "1"), or <c>null</c> for the identity.</param>
    /// <param name="normLayer">Builds a normalisation layer for a channel count.</param>
    public BasicBlock(long inplanes, long planes, long stride, Module<Tensor, Tensor>? downsample, Func<long, Module<Tensor, Tensor>> normLayer)
        : base(nameof(BasicBlock))
    {
        conv1 = Conv2d(inplanes, planes, 3, stride: stride, padding: 1, bias: false);
        bn1 = normLayer(planes);
        relu = ReLU(inplace: true);
        conv2 = Conv2d(planes, planes, 3, stride: 1, padding: 1, bias: false);
        bn2 = normLayer(planes);
        this.downsample = downsample;
        RegisterComponents();
    }

    /// <summary>The norm layer whose weight <see cref="ResNetOptions.ZeroInitResidual"/> sets to zero.</summary>
    internal Module<Tensor, Tensor> LastNorm => bn2;

    /// <inheritdoc />
    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var identity = downsample is null ? input : downsample.forward(input);
        var x = relu.forward(bn1.forward(conv1.forward(input)));
        x = bn2.forward(conv2.forward(x));
        using var one = 1.ToScalar(); // explicit alpha: add_(Tensor) would make an implicit Scalar 1 itself
        x = x.add_(identity, one);
        return relu.forward(x).MoveToOuterDisposeScope();
    }
}
