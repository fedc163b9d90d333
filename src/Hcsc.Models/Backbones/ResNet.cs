using Hcsc.Runtime;
using Hcsc.Models.Normalization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Hcsc.Models.Backbones;

/// <summary>
/// A ResNet whose module and parameter names are torchvision's (<c>conv1</c>, <c>bn1</c>, <c>layer1.0.conv1</c>, …,
/// <c>layer4.2.downsample.0</c>, <c>fc</c>), so state dicts move between PyTorch and .NET without renaming.
/// Input [B, C, H, W] (C = <see cref="ResNetOptions.InputChannels"/>); <see cref="Features"/> gives [B, <see cref="FeatureDim"/>];
/// <see cref="forward"/> gives <c>fc</c> of those features.
/// </summary>
public sealed class ResNet : Module<Tensor, Tensor>
{
    private readonly Module<Tensor, Tensor> conv1;
    private readonly Module<Tensor, Tensor> bn1;
    private readonly Module<Tensor, Tensor> relu;
    private readonly Module<Tensor, Tensor> maxpool;
    private readonly Sequential layer1;
    private readonly Sequential layer2;
    private readonly Sequential layer3;
    private readonly Sequential layer4;
    private readonly Module<Tensor, Tensor> avgpool;
    private Module<Tensor, Tensor> fc;

    private ResNet(ResNetOptions options, ResNetArchitecture architecture) : base(architecture.Name)
    {
        Options = options;
        Architecture = architecture;
        // SplitBatchNorm2d with one split is BatchNorm2d (same state dict) whose per-step counter update uses an explicit Scalar.
        var normLayer = options.NormLayer ?? (channels => new SplitBatchNorm2d(channels, numSplits: 1));
        long width = options.BaseWidth;
        long inplanes = width;

        conv1 = options.SmallImageStem
            ? Conv2d(options.InputChannels, width, 3, stride: 1, padding: 1, bias: false)
            : Conv2d(options.InputChannels, width, 7, stride: 2, padding: 3, bias: false);
        bn1 = normLayer(width);
        relu = ReLU(inplace: true);
        maxpool = options.SmallImageStem ? Identity() : MaxPool2d(3, stride: 2, padding: 1);
        layer1 = MakeLayer(architecture, ref inplanes, width, architecture.Layers[0], 1, normLayer);
        layer2 = MakeLayer(architecture, ref inplanes, width * 2, architecture.Layers[1], 2, normLayer);
        layer3 = MakeLayer(architecture, ref inplanes, width * 4, architecture.Layers[2], 2, normLayer);
        layer4 = MakeLayer(architecture, ref inplanes, width * 8, architecture.Layers[3], 2, normLayer);
        avgpool = AdaptiveAvgPool2d(1);
        FeatureDim = inplanes;
        fc = options.NumClasses > 0 ? Linear(inplanes, options.NumClasses) : Identity();
        RegisterComponents();
        Initialize(options);
    }

    /// <summary>The options this network was built from.</summary>
    public ResNetOptions Options { get; }

    /// <summary>The architecture (block kind and depth).</summary>
    public ResNetArchitecture Architecture { get; }

    /// <summary>Size of the pooled features returned by <see cref="Features"/>: 8·expansion·BaseWidth (512 for ResNet-18, 2048 for ResNet-50).</summary>
    public long FeatureDim { get; }

    /// <summary>
    /// Side of the last stage's feature map for a square input of side <paramref name="inputSize"/>: every stride-2
    /// step (7×7 stem convolution and max pool unless <see cref="ResNetOptions.SmallImageStem"/>, then layer2–layer4)
    /// maps n to ⌊(n − 1) / 2⌋ + 1, so 224 → 7 and, with the small stem, 32 → 4.
    /// </summary>
    public int FeatureMapSize(int inputSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(inputSize, 1);
        int halvings = Options.SmallImageStem ? 3 : 5;
        int n = inputSize;
        for (int i = 0; i < halvings; i++)
        {
            n = ((n - 1) / 2) + 1;
        }

        return n;
    }

    /// <summary>The head applied to the pooled features by <see cref="forward"/> (torchvision's <c>fc</c>).</summary>
    public Module<Tensor, Tensor> Head => fc;

    /// <summary>
    /// Builds a ResNet from <paramref name="options"/>, initialised as torchvision does. It changes no process-wide
    /// setting: call <see cref="TorchRuntime.Prepare"/> once at startup for the libtorch settings training wants.
    /// </summary>
    /// <exception cref="ArgumentException">The options are invalid; the message lists every problem.</exception>
    /// <exception cref="InvalidOperationException">This CPU reports no caches and <see cref="TorchRuntime.Prepare"/> was
    /// not called: oneDNN's convolutions would compute wrong gradients (<see cref="TorchRuntime.ConvolutionProblem()"/>).</exception>
    public static ResNet Create(ResNetOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var problems = options.Validate();
        if (problems.Count > 0)
        {
            throw new ArgumentException("Invalid ResNetOptions: " + string.Join(" ", problems), nameof(options));
        }

        if (TorchRuntime.ConvolutionProblem() is { } unsafeConvolutions)
        {
            throw new InvalidOperationException(unsafeConvolutions);
        }

        return new ResNet(options, ResNetArchitectures.Get(options.Arch));
    }

    /// <summary>Pooled features before any head: input [B, C, H, W] → [B, <see cref="FeatureDim"/>].</summary>
    public Tensor Features(Tensor images)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.dim() != 4 || images.shape[1] != Options.InputChannels)
        {
            throw new ArgumentException(
                $"Expected images [B, {Options.InputChannels}, H, W]; got {Hcsc.Core.Tensors.TensorDescription.Describe(images)}.", nameof(images));
        }

        using var scope = NewDisposeScope();
        var x = maxpool.forward(relu.forward(bn1.forward(conv1.forward(InLayout(images)))));
        x = layer4.forward(layer3.forward(layer2.forward(layer1.forward(x))));
        return avgpool.forward(x).flatten(1).MoveToOuterDisposeScope();
    }

    // The images in Options.Layout: a channels-first tensor is copied once into channels-last memory (a permuted view of
    // [B, H, W, C]); the convolutions then produce channels-last outputs, which the later layers keep.
    private Tensor InLayout(Tensor images)
    {
        bool channelsLast = Options.Layout == ActivationLayout.ChannelsLast
            || (Options.Layout == ActivationLayout.Auto && images.device_type == DeviceType.CPU);
        bool isChannelsLast = images.stride(1) == 1 && images.stride(3) == images.shape[1];
        return channelsLast && !isChannelsLast ? images.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2) : images;
    }

    /// <summary>Head of the pooled features: input [B, C, H, W] → [B, NumClasses] (or the head's output size).</summary>
    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        return fc.forward(Features(input)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Replaces <c>fc</c> with <paramref name="head"/> (which takes [B, <see cref="FeatureDim"/>]); the old head is disposed.
    /// Its parameters keep the <c>fc.</c> prefix, as in MoCo, where <c>fc</c> becomes the projection MLP.
    /// </summary>
    public void ReplaceHead(Module<Tensor, Tensor> head)
    {
        ArgumentNullException.ThrowIfNull(head);
        var old = fc;
        register_module(nameof(fc), null!);
        fc = head;
        register_module(nameof(fc), head);
        if (!ReferenceEquals(old, head))
        {
            old.Dispose();
        }
    }

    private static Sequential MakeLayer(
        ResNetArchitecture architecture, ref long inplanes, long planes, int blocks, long stride, Func<long, Module<Tensor, Tensor>> normLayer)
    {
        var expansion = architecture.Expansion;
        Module<Tensor, Tensor>? downsample = null;
        if (stride != 1 || inplanes != planes * expansion)
        {
            downsample = Sequential(
                ("0", (Module<Tensor, Tensor>)Conv2d(inplanes, planes * expansion, 1, stride: stride, bias: false)),
                ("1", normLayer(planes * expansion)));
        }

        var modules = new List<(string, Module<Tensor, Tensor>)>(blocks);
        for (var i = 0; i < blocks; i++)
        {
            var blockStride = i == 0 ? stride : 1;
            var blockDownsample = i == 0 ? downsample : null;
            Module<Tensor, Tensor> block = architecture.Block == ResidualBlockKind.Basic
                ? new BasicBlock(inplanes, planes, blockStride, blockDownsample, normLayer)
                : new Bottleneck(inplanes, planes, blockStride, blockDownsample, normLayer);
            modules.Add((i.ToString(System.Globalization.CultureInfo.InvariantCulture), block));
            inplanes = planes * expansion;
        }

        return Sequential(modules);
    }

    private void Initialize(ResNetOptions options)
    {
        using var noGrad = no_grad();

        // As torchvision: Kaiming-normal convolutions, and norm layers (BatchNorm2d, GroupNorm) at weight 1,
        // bias 0. TorchSharp's GroupNorm leaves its affine parameters uninitialised (sometimes NaN), so
        // this is not only cosmetic.
        foreach (var (_, module) in named_modules())
        {
            switch (module)
            {
                case Conv2d conv:
                    init.kaiming_normal_(conv.weight, mode: init.FanInOut.FanOut, nonlinearity: init.NonlinearityType.ReLU);
                    break;
                case TorchSharp.Modules.BatchNorm2d or TorchSharp.Modules.GroupNorm:
                    foreach (var (name, parameter) in module.named_parameters(recurse: false))
                    {
                        _ = name == "weight" ? init.ones_(parameter) : name == "bias" ? init.zeros_(parameter) : parameter;
                    }

                    break;
            }
        }

        // Then, optionally, the last norm of every residual block at weight 0 (each block starts as the identity).
        if (options.ZeroInitResidual)
        {
            foreach (var (_, module) in named_modules())
            {
                var last = module switch
                {
                    BasicBlock basic => basic.LastNorm,
                    Bottleneck bottleneck => bottleneck.LastNorm,
                    _ => null,
                };
                foreach (var (name, parameter) in last?.named_parameters(recurse: false) ?? [])
                {
                    if (name == "weight")
                    {
                        parameter.zero_();
                    }
                }
            }
        }
    }
}
