using Hcsc.Core.Devices;
using TorchSharp;

namespace Hcsc.Tests.Core;

public class TorchDevicesTests
{
    [Theory]
    [InlineData("cpu")]
    [InlineData(" CPU ")]
    public void Cpu_resolves_to_the_cpu(string spec) => TorchDevices.Resolve(spec).type.Should().Be(DeviceType.CPU);

    [Fact]
    public void Auto_picks_cuda_only_when_available() =>
        TorchDevices.Resolve("auto").type.Should().Be(torch.cuda.is_available() ? DeviceType.CUDA : DeviceType.CPU);

    [Theory]
    [InlineData("gpu")]
    [InlineData("cuda:")]
    [InlineData("cuda:-1")]
    [InlineData("cuda:x")]
    [InlineData("")]
    public void Malformed_strings_are_rejected(string spec)
    {
        var act = () => TorchDevices.Resolve(spec);
        act.Should().Throw<ArgumentException>().WithMessage($"Device '{spec}' is not understood. Use 'auto', 'cpu', 'cuda' or 'cuda:N'*");
        TorchDevices.IsWellFormed(spec).Should().BeFalse();
    }

    [Theory]
    [InlineData("cuda")]
    [InlineData("cuda:1")]
    public void Cuda_without_cuda_says_what_to_do(string spec)
    {
        if (torch.cuda.is_available())
        {
            TorchDevices.IsWellFormed(spec).Should().BeTrue();
            return;
        }

        var act = () => TorchDevices.Resolve(spec);
        act.Should().Throw<InvalidOperationException>()
            .WithMessage($"Device '{spec}' was requested but CUDA is not available*Use --device cpu*TorchBackend=cuda-linux*");
    }
}
