using Hcsc.Core.Devices;
using Hcsc.Core.Options;
using Hcsc.Losses.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Tests.Core;

public class KernelSelectionTests
{
    [Fact]
    public void Tensor_turns_every_host_kernel_off_for_cpu_tensors_and_scopes_nest()
    {
        using var scope = NewDisposeScope();
        var logits = rand(4, 9);
        var table = rand(9, 4);
        var normalisers = rand(4);
        var tables = new[] { new ThresholdTable(rand(3, 9), null) };
        bool AnyHost() => QueueCrossEntropy.OnHost(logits) || PrototypeContrast.OnHost(logits)
            || ThresholdColumns.OnHost(logits.t(), table, normalisers) || BernoulliRows.CanRunOnHost(tables);

        KernelSelection.Current.Should().Be(KernelPath.Auto);
        bool hostByDefault = AnyHost();
        using (KernelSelection.Use(KernelPath.Tensor))
        {
            KernelSelection.HostKernelsAllowed.Should().BeFalse();
            AnyHost().Should().BeFalse("no host kernel may take a tensor on the GPU's path");
            using (KernelSelection.Use(KernelPath.Host))
            {
                AnyHost().Should().Be(hostByDefault);
            }

            KernelSelection.Current.Should().Be(KernelPath.Tensor, "an inner scope restores the outer choice");
        }

        KernelSelection.Current.Should().Be(KernelPath.Auto);
        FluentActions.Invoking(() => KernelSelection.Use((KernelPath)7)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("path");
    }

    [Fact]
    public async Task The_choice_does_not_leak_into_other_flows()
    {
        using var entered = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var other = Task.Run(() =>
        {
            using (KernelSelection.Use(KernelPath.Tensor))
            {
                entered.Set();
                release.Wait();
            }
        });
        entered.Wait();
        KernelSelection.Current.Should().Be(KernelPath.Auto, "another test's scope is not this flow's");
        release.Set();
        await other;
    }
}
