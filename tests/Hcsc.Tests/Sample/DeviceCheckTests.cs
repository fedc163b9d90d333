using Hcsc.Samples.ImageNetPretrain.Commands;
using Hcsc.Samples.ImageNetPretrain.Training;
using static TorchSharp.torch;

namespace Hcsc.Tests.Sample;

public class DeviceCheckTests
{
    [Fact]
    public void Every_check_passes_on_the_cpu_and_says_what_it_measured()
    {
        var output = new StringWriter();
        var settings = new DeviceCheckSettings { Device = CPU, Arch = "resnet18", Width = 4, ImageSize = 16, BatchSize = 8, Steps = 2, WarmupSteps = 1 };
        DeviceCheck.Run(settings, output).Should().BeTrue(output.ToString());
        string text = output.ToString();
        text.Should().Contain("device: cpu; TorchSharp ");
        text.Should().MatchRegex(@"ok    one training step against float64 on the CPU: loss [0-9.]+ vs [0-9.]+ \(relative [0-9.E+-]+\), gradients [0-9.E+-]+ of the largest; bound 1\.4E-003");
        text.Should().MatchRegex(@"ok    throughput: resnet18 \(width 4\), 16 px, batch 8, 2 steps: [0-9.]+ images/s");
        text.TrimEnd().Should().EndWith("gpu-check: PASS");
    }

    [Fact]
    public void Invalid_settings_are_refused_before_anything_runs()
    {
        HcscCli.Create().Parse(["gpu-check", "--device", "cpu", "--steps", "0"]).Invoke().Should().Be(2);
        HcscCli.Create().Parse(["gpu-check", "--device", "tpu"]).Invoke().Should().Be(2);
    }
}
