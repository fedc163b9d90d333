using Hcsc.Core.Randomness;
using TorchSharp;

namespace Hcsc.Tests.Core;

public class RandomSourcesTests
{
    [Fact]
    public void The_same_seed_reproduces_every_source()
    {
        (float[] Global, float[] Explicit, int[] Managed) Draw(long seed)
        {
            using var sources = RandomSources.SeedEverything(seed);
            using var global = torch.rand(5);
            using var explicitDraw = torch.rand(5, generator: sources.Generator);
            return (global.data<float>().ToArray(), explicitDraw.data<float>().ToArray(), Enumerable.Range(0, 5).Select(_ => sources.Managed.Next()).ToArray());
        }

        var first = Draw(42);
        var second = Draw(42);
        var other = Draw(43);
        second.Global.Should().Equal(first.Global);
        second.Explicit.Should().Equal(first.Explicit);
        second.Managed.Should().Equal(first.Managed);
        other.Global.Should().NotEqual(first.Global);
        other.Explicit.Should().NotEqual(first.Explicit);
        other.Managed.Should().NotEqual(first.Managed);
    }
}
