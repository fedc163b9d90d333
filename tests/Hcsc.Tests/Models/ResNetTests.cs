using Hcsc.Models.Backbones;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Tests.Models;

public class ResNetTests
{
    private static long ParameterCount(nn.Module module) => module.parameters().Sum(p => p.numel());

    [Theory]
    [InlineData("resnet18", 11_689_512L)]
    [InlineData("resnet50", 25_557_032L)]
    public void Standard_configs_have_torchvisions_parameter_counts(string arch, long expected)
    {
        using var net = ResNet.Create(new ResNetOptions { Arch = arch });
        ParameterCount(net).Should().Be(expected);
    }

    [Theory]
    [InlineData("resnet18", 1, 8L)]
    [InlineData("resnet34", 1, 8L)]
    [InlineData("resnet50", 4, 8L)]
    [InlineData("resnet101", 4, 4L)]
    [InlineData("resnet152", 4, 4L)]
    public void Every_arch_gives_the_expected_shapes_at_small_width(string arch, int expansion, long width)
    {
        using var scope = NewDisposeScope();
        using var net = ResNet.Create(new ResNetOptions { Arch = arch, BaseWidth = (int)width, SmallImageStem = true, InputChannels = 1, NumClasses = 5 });
        net.FeatureDim.Should().Be(8 * expansion * width);
        using var noGrad = no_grad();
        var x = randn(2, 1, 8, 8);
        net.Features(x).shape.Should().Equal(2, 8 * expansion * width);
        net.forward(x).shape.Should().Equal(2, 5);
    }

    [Fact]
    public void Imagenet_stem_downsamples_by_32_and_pools()
    {
        using var scope = NewDisposeScope();
        using var net = ResNet.Create(new ResNetOptions { Arch = "resnet18", BaseWidth = 4, NumClasses = 0 });
        using var noGrad = no_grad();
        net.forward(randn(3, 3, 40, 40)).shape.Should().Equal(3, 32);
    }

    [Fact]
    public void Parameter_names_are_torchvisions()
    {
        using var net = ResNet.Create(new ResNetOptions { Arch = "resnet50", BaseWidth = 4 });
        var names = net.state_dict().Keys.ToList();
        names.Should().Contain([
            "conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked",
            "layer1.0.conv1.weight", "layer1.0.bn3.weight", "layer1.0.downsample.0.weight", "layer1.0.downsample.1.running_var",
            "layer4.2.conv3.weight", "layer4.0.downsample.0.weight", "fc.weight", "fc.bias"]);
        names.Should().HaveCount(320);
    }

    [Fact]
    public void Zero_init_residual_zeroes_the_last_bn_of_every_block()
    {
        using var net = ResNet.Create(new ResNetOptions { Arch = "resnet18", BaseWidth = 4, ZeroInitResidual = true });
        var sd = net.state_dict();
        sd["layer1.0.bn2.weight"].abs().sum().item<float>().Should().Be(0);
        sd["layer3.1.bn2.weight"].abs().sum().item<float>().Should().Be(0);
        sd["layer3.1.bn1.weight"].min().item<float>().Should().Be(1);
    }

    [Fact]
    public void Norm_layers_from_a_factory_start_at_weight_one_and_bias_zero()
    {
        // TorchSharp's GroupNorm leaves its affine parameters uninitialised; torchvision sets them to 1 and 0.
        using var scope = NewDisposeScope();
        using var net = ResNet.Create(new ResNetOptions { Arch = "resnet18", BaseWidth = 4, NumClasses = 0, NormLayer = c => nn.GroupNorm(2, c) });
        var norms = net.named_parameters().Where(p => p.name.Contains("bn") || p.name.Contains("downsample.1")).ToList();
        norms.Should().NotBeEmpty();
        foreach (var (name, parameter) in norms)
        {
            double expected = name.EndsWith("weight", StringComparison.Ordinal) ? 1 : 0;
            parameter.eq(expected).all().item<bool>().Should().BeTrue(name);
        }
    }

    [Fact]
    public void Invalid_options_are_listed_together()
    {
        var act = () => ResNet.Create(new ResNetOptions { Arch = "resnet19", BaseWidth = 0, InputChannels = 0 });
        act.Should().Throw<ArgumentException>()
            .WithMessage("*resnet19*")
            .And.Message.Should().Contain("BaseWidth").And.Contain("InputChannels");
        var layout = () => ResNet.Create(new ResNetOptions { Arch = "resnet18", Layout = (ActivationLayout)7 });
        layout.Should().Throw<ArgumentException>().WithMessage("*Layout 7*ChannelsLast*");
    }

    [Theory]
    [InlineData("resnet18", ActivationLayout.ChannelsLast, true)]
    [InlineData("resnet50", ActivationLayout.ChannelsLast, true)]
    [InlineData("resnet18", ActivationLayout.Auto, true)] // the CPU
    [InlineData("resnet18", ActivationLayout.ChannelsFirst, false)]
    public void Every_normalisation_layer_sees_the_chosen_layout(string arch, ActivationLayout layout, bool channelsLast)
    {
        using var scope = NewDisposeScope();
        var seen = new List<(long Channels, bool ChannelsLast)>();
        using var net = ResNet.Create(new ResNetOptions
        {
            Arch = arch, BaseWidth = 4, SmallImageStem = true, NumClasses = 0, Layout = layout,
            NormLayer = channels => new LayoutProbe(channels, seen),
        });
        using var noGrad = no_grad();
        net.Features(randn(2, 3, 9, 9));
        seen.Should().HaveCount(arch == "resnet18" ? 20 : 53);
        seen.Should().OnlyContain(s => s.ChannelsLast == channelsLast, "the input is laid out once and every convolution keeps it");
    }

    [Theory]
    [InlineData("resnet18")]
    [InlineData("resnet50")]
    public void Channels_last_is_as_close_to_float64_as_channels_first(string arch)
    {
        // Same weights, same input, training mode. The two layouts run different float32 kernels, so they differ by
        // rounding; against the same network in float64 (channels-first), channels-last must be no further off than
        // channels-first is: features, every parameter's gradient, and the BN running statistics.
        using var scope = NewDisposeScope();
        var options = new ResNetOptions { Arch = arch, BaseWidth = 8, SmallImageStem = true, NumClasses = 5 };
        manual_seed(3);
        using var first = ResNet.Create(options with { Layout = ActivationLayout.ChannelsFirst });
        using var last = ResNet.Create(options with { Layout = ActivationLayout.ChannelsLast });
        using var exact = ResNet.Create(options with { Layout = ActivationLayout.ChannelsFirst });
        last.load_state_dict(first.state_dict());
        exact.load_state_dict(first.state_dict());
        exact.to(float64);
        var x = randn(6, 3, 11, 11);
        Dictionary<string, Tensor> Run(ResNet net, ScalarType type)
        {
            net.train();
            var output = net.forward(x.to(type));
            output.pow(2).sum().backward();
            var values = net.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!.to(float64));
            values["output"] = output.detach().to(float64);
            foreach (var (name, buffer) in net.named_buffers().Where(b => b.name.Contains("running_", StringComparison.Ordinal)))
            {
                values[name] = buffer.to(float64);
            }

            return values;
        }

        var reference = Run(exact, float64);
        var (channelsFirst, channelsLast) = (Run(first, float32), Run(last, float32));
        foreach (var (name, value) in reference)
        {
            double scale = value.abs().max().item<double>();
            double firstError = (channelsFirst[name] - value).abs().max().item<double>();
            double lastError = (channelsLast[name] - value).abs().max().item<double>();
            // Both errors are float32 rounding through ~20-50 layers of training-mode BN: they vary with the thread count,
            // so the bound allows 4x channels-first's error plus 2e-4 of the largest value; a layout bug is O(scale).
            lastError.Should().BeLessThan((4 * firstError) + (2e-4 * scale) + 1e-12, name);
        }
    }

    // A norm layer that records, for each call, whether its input is laid out channels-last, and passes it on.
    private sealed class LayoutProbe : nn.Module<Tensor, Tensor>
    {
        private readonly long _channels;
        private readonly List<(long, bool)> _seen;

        public LayoutProbe(long channels, List<(long, bool)> seen) : base(nameof(LayoutProbe)) => (_channels, _seen) = (channels, seen);

        public override Tensor forward(Tensor input)
        {
            _seen.Add((_channels, input.stride(1) == 1 && input.stride(3) == _channels));
            return input.alias();
        }
    }

    [Fact]
    public void The_architecture_table_has_exactly_the_names_the_options_allow()
    {
        // Core owns the list (Model:Arch is validated without this package); the table of block kinds must match it.
        ResNetArchitectures.Names.Should().Equal(Hcsc.Core.Options.HcscOptionsValidator.KnownArchitectures);
        var table = (IReadOnlyDictionary<string, ResNetArchitecture>)typeof(ResNetArchitectures)
            .GetField("All", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!.GetValue(null)!;
        table.Keys.Should().BeEquivalentTo(ResNetArchitectures.Names);
        foreach (string name in ResNetArchitectures.Names)
        {
            ResNetArchitectures.Get(name).Name.Should().Be(name);
        }
    }
}
