using Hcsc.Core.Devices;
using Hcsc.Core.Options;
using Hcsc.Samples.ImageNetPretrain.Training;
using static TorchSharp.torch;

namespace Hcsc.Tests.Sample;

public sealed class PreflightTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("hcsc-preflight-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Theory]
    [InlineData(KernelPath.Auto)]
    [InlineData(KernelPath.Tensor)]
    public void Passes_on_the_cpu_and_leaves_nothing_behind(KernelPath path)
    {
        using (KernelSelection.Use(path))
        {
            Preflight.Run(CPU, ObjectiveOptions.Reference(), _directory).Should().BeGreaterThan(0);
        }

        Directory.EnumerateFileSystemEntries(_directory).Should().BeEmpty("the checkpoint of the round trip is deleted");
    }

    [Fact]
    public void A_device_that_cannot_run_the_step_stops_with_the_device_and_the_stage()
    {
        // The meta device holds shapes without data: no stage can read its values there.
        var act = () => Preflight.Run(new Device("meta"), new ObjectiveOptions(), _directory);
        act.Should().Throw<InvalidOperationException>()
            .WithMessage("Preflight on meta failed at *Nothing was trained*--skip-preflight*");
        Directory.EnumerateFileSystemEntries(_directory).Should().BeEmpty();
    }
}
