using Hcsc.Models.Momentum;
using Hcsc.Core.Queue;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Tests.Models;

public class MomentumUpdateTests
{
    [Fact]
    public void Ema_follows_the_formula_and_leaves_buffers_alone()
    {
        using var scope = NewDisposeScope();
        var query = nn.Sequential(("0", nn.Linear(2, 2)), ("1", nn.BatchNorm1d(2)));
        var key = nn.Sequential(("0", nn.Linear(2, 2)), ("1", nn.BatchNorm1d(2)));
        using (no_grad())
        {
            query.get_parameter("0.weight")!.copy_(tensor(new float[] { 1, 2, 3, 4 }).view(2, 2));
            query.get_parameter("0.bias")!.copy_(tensor(new float[] { 10, -10 }));
            key.get_parameter("0.weight")!.copy_(tensor(new float[] { 0, 0, 1, 1 }).view(2, 2));
            key.get_parameter("0.bias")!.copy_(tensor(new float[] { 0, 5 }));
            query.get_buffer("1.running_mean")!.fill_(7);
        }

        MomentumUpdate.Apply(query, key, 0.9);

        // 0.9·θ_k + 0.1·θ_q, by hand.
        key.get_parameter("0.weight")!.data<float>().ToArray().Should().BeEquivalentTo(new[] { 0.1f, 0.2f, 1.2f, 1.3f }, o => o.Using<float>(c => c.Subject.Should().BeApproximately(c.Expectation, 1e-6f)).WhenTypeIs<float>());
        key.get_parameter("0.bias")!.data<float>().ToArray().Should().BeEquivalentTo(new[] { 1.0f, 3.5f }, o => o.Using<float>(c => c.Subject.Should().BeApproximately(c.Expectation, 1e-6f)).WhenTypeIs<float>());
        key.get_buffer("1.running_mean")!.abs().sum().item<float>().Should().Be(0);
    }

    [Fact]
    public void Mismatched_encoders_are_listed()
    {
        var query = nn.Sequential(("0", nn.Linear(2, 3)));
        var key = nn.Sequential(("0", nn.Linear(2, 2)), ("1", nn.Linear(2, 2)));
        var act = () => MomentumUpdate.Apply(query, key, 0.99);
        act.Should().Throw<ArgumentException>().WithMessage("*'0.weight' has shape [3, 2]*'1.weight' is missing from the source*");
    }

    [Theory]
    [InlineData(1.0)]
    [InlineData(-0.1)]
    [InlineData(double.NaN)]
    public void The_momentum_follows_the_one_rule_of_Model_EncoderMomentum(double momentum)
    {
        var query = nn.Sequential(("0", nn.Linear(2, 2)));
        var key = nn.Sequential(("0", nn.Linear(2, 2)));
        var act = () => MomentumUpdate.Apply(query, key, momentum);
        act.Should().Throw<ArgumentOutOfRangeException>().WithMessage($"{Hcsc.Core.Options.HcscOptionsValidator.EncoderMomentumProblem(momentum)}*");
    }
}

public class KeyQueueTests
{
    private static Tensor Keys(int b, float start) => arange(start, start + b, dtype: float32).view(b, 1).expand(b, 2).contiguous();

    [Fact]
    public void Starts_with_unit_keys_and_no_indices()
    {
        using var queue = new KeyQueue(6, 4);
        queue.Keys.shape.Should().Equal(6, 4);
        queue.Keys.norm(1).allclose(ones(6)).Should().BeTrue();
        queue.Indices.data<long>().ToArray().Should().AllBeEquivalentTo(-1L);
        queue.Pointer.Should().Be(0);
    }

    [Fact]
    public void Ring_overwrites_the_oldest_and_wraps_with_indices()
    {
        using var scope = NewDisposeScope();
        using var queue = new KeyQueue(5, 2);
        queue.Enqueue(Keys(2, 0), tensor(new long[] { 100, 101 })).Should().Be(0);
        queue.Enqueue(Keys(2, 2), tensor(new long[] { 102, 103 })).Should().Be(2);
        queue.Pointer.Should().Be(4);
        queue.Enqueue(Keys(2, 4), tensor(new long[] { 104, 105 })).Should().Be(4);   // wraps: slot 4, then slot 0
        queue.Pointer.Should().Be(1);
        queue.Indices.data<long>().ToArray().Should().Equal(105, 101, 102, 103, 104);
        queue.Keys[.., 0].data<float>().ToArray().Should().Equal(5, 1, 2, 3, 4);
        queue.Enqueue(Keys(1, 9), tensor(new[] { 7 })).Should().Be(1);           // int32 indices accepted
        queue.Indices.data<long>().ToArray().Should().Equal(105, 7, 102, 103, 104);
    }

    [Fact]
    public void Enqueued_keys_are_detached_copies()
    {
        using var scope = NewDisposeScope();
        using var queue = new KeyQueue(4, 2);
        var k = ones(2, 2, requires_grad: true) * 1;
        queue.Enqueue(k, tensor(new long[] { 1, 2 }));
        queue.Keys.requires_grad.Should().BeFalse();
    }

    [Fact]
    public void Wrong_shapes_are_refused()
    {
        using var scope = NewDisposeScope();
        using var queue = new KeyQueue(4, 2);
        FluentActions.Invoking(() => queue.Enqueue(ones(2, 3), tensor(new long[] { 1, 2 }))).Should().Throw<ArgumentException>().WithMessage("*[B, 2]*");
        FluentActions.Invoking(() => queue.Enqueue(ones(5, 2), arange(5))).Should().Throw<ArgumentException>().WithMessage("*does not fit*");
        FluentActions.Invoking(() => queue.Enqueue(ones(2, 2), tensor(new float[] { 1, 2 }))).Should().Throw<ArgumentException>().WithMessage("*integer indices*");
    }
}
