using Hcsc.Runtime;
using Hcsc.Models.Backbones;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Tests.Models;

/// <summary>
/// Float32 convolution gradients on the CPU, as the models compute them (after <see cref="OneDnnGuard"/>), against
/// float64 gradients (which oneDNN does not compute: ATen's own kernels). On a CPU that reports no caches, oneDNN 3.7
/// gets the input gradient of small-channel 3×3 convolutions wrong (off by up to ~15, NaN with 2 threads) and dies
/// with SIGFPE in the strided 1×1 backward-data of ResNet-50: these tests fail there without the guard.
/// </summary>
[Trait("Category", "CpuWithoutCaches")]
public class ConvolutionGradientTests
{
    [Theory]
    [InlineData(2, 2, 8, 3, 1, 1)]
    [InlineData(4, 4, 8, 3, 1, 1)]
    [InlineData(4, 4, 16, 3, 1, 1)]
    [InlineData(4, 8, 8, 3, 2, 1)]
    [InlineData(8, 8, 4, 3, 1, 1)]
    [InlineData(4, 8, 8, 1, 2, 0)]
    [InlineData(16, 16, 8, 3, 1, 1)]
    [InlineData(3, 16, 32, 7, 2, 3)]
    [InlineData(512, 1024, 14, 1, 2, 0)]   // ResNet-50 layer3 downsampling (SIGFPE on such CPUs)
    public void Float32_gradients_match_float64(int inChannels, int outChannels, int size, int kernel, int stride, int padding)
    {
        OneDnnGuard.Apply();
        using var scope = NewDisposeScope();
        var generator = new Generator(11);
        var x = randn([4, inChannels, size, size], generator: generator);
        var w = randn([outChannels, inChannels, kernel, kernel], generator: generator) / Math.Sqrt(inChannels * kernel * kernel);
        var (gx, gw, upstream) = Gradients(x, w, stride, padding, null);
        var (gx64, gw64, _) = Gradients(x.to(float64), w.to(float64), stride, padding, upstream.to(float64));

        RelativeError(gx, gx64).Should().BeLessThan(1e-5, "input gradient");
        RelativeError(gw, gw64).Should().BeLessThan(1e-5, "weight gradient");
    }

    // ChannelsFirst is the layout whose oneDNN kernels broke on CPUs that report no caches (issue 11): the simulation's
    // negative control (tests/cpu-without-caches/run.sh) relies on that case. ChannelsLast is what Auto runs on a CPU.
    [Theory]
    [InlineData(ActivationLayout.ChannelsFirst)]
    [InlineData(ActivationLayout.ChannelsLast)]
    public void A_small_channel_resnet_has_finite_gradients_that_match_float64(ActivationLayout layout)
    {
        using var scope = NewDisposeScope();
        manual_seed(1);
        using var net = ResNet.Create(new ResNetOptions { Arch = "resnet18", BaseWidth = 4, SmallImageStem = true, Layout = layout });
        using var net64 = ResNet.Create(new ResNetOptions { Arch = "resnet18", BaseWidth = 4, SmallImageStem = true, Layout = layout });
        net64.load_state_dict(net.state_dict());
        net64.to(ScalarType.Float64);
        net.train();
        net64.train();
        var x = randn(4, 3, 8, 8);
        net.call(x).pow(2).sum().backward();
        net64.call(x.to(float64)).pow(2).sum().backward();

        var reference = net64.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!);
        foreach (var (name, parameter) in net.named_parameters())
        {
            parameter.grad!.isfinite().all().item<bool>().Should().BeTrue(name);
            RelativeError(parameter.grad!, reference[name]).Should().BeLessThan(1e-3, name);
        }
    }

    private static (Tensor Input, Tensor Weight, Tensor Upstream) Gradients(Tensor x, Tensor w, int stride, int padding, Tensor? upstream)
    {
        var xi = x.detach().requires_grad_();
        var wi = w.detach().requires_grad_();
        var y = nn.functional.conv2d(xi, wi, null, [stride, stride], [padding, padding]);
        upstream ??= randn(y.shape, generator: new Generator(12));
        (y * upstream).sum().backward();
        return (xi.grad!, wi.grad!, upstream);
    }

    private static double RelativeError(Tensor actual, Tensor expected)
    {
        var a = actual.to(float64);
        return (a - expected).abs().max().item<double>() / expected.abs().max().item<double>();
    }
}
