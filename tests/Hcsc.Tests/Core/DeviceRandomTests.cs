using Hcsc.Core.Randomness;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Tests.Core;

public class DeviceRandomTests
{
    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.Float64)]
    public void On_the_cpu_the_draws_are_the_generators_own_bit_for_bit(ScalarType dtype)
    {
        // Resumed runs continue bit for bit only if the CPU path draws exactly what rand(…, generator) drew before.
        using var scope = NewDisposeScope();
        using var ours = new Generator(42);
        using var theirs = new Generator(42);
        for (int call = 0; call < 3; call++)
        {
            var a = DeviceRandom.Uniform([5, 7], dtype, CPU, ours);
            var b = rand([5, 7], dtype: dtype, generator: theirs);
            a.dtype.Should().Be(dtype);
            a.device_type.Should().Be(DeviceType.CPU);
            a.eq(b).all().item<bool>().Should().BeTrue($"call {call}");
        }
    }

    [Fact]
    public void A_seed_draw_advances_the_generator_and_repeats_from_a_saved_state()
    {
        using var generator = new Generator(3);
        using var state = generator.get_state();
        ulong first = DeviceRandom.DrawSeed(generator);
        ulong second = DeviceRandom.DrawSeed(generator);
        second.Should().NotBe(first);
        first.Should().BeLessThan((ulong)long.MaxValue);
        generator.set_state(state);
        DeviceRandom.DrawSeed(generator).Should().Be(first);
    }

    [Fact]
    public void Null_arguments_are_refused_by_name()
    {
        using var generator = new Generator(1);
        FluentActions.Invoking(() => DeviceRandom.Uniform([2], ScalarType.Float32, CPU, null!))
            .Should().Throw<ArgumentNullException>().WithParameterName("generator");
        FluentActions.Invoking(() => DeviceRandom.Uniform([2], ScalarType.Float32, null!, generator))
            .Should().Throw<ArgumentNullException>().WithParameterName("device");
    }
}
