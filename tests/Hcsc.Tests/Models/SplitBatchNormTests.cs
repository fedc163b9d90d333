using Hcsc.Models.Normalization;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Tests.Models;

public class SplitBatchNormTests
{
    [Fact]
    public void Training_equals_batch_norm_applied_to_each_split()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        const int splits = 4, channels = 3;
        var x = randn(8, channels, 5, 5, dtype: ScalarType.Float64) * 2 + 1;
        using var split = new SplitBatchNorm2d(channels, splits);
        split.to(ScalarType.Float64);
        using (no_grad())
        {
            split.get_parameter("weight")!.copy_(tensor(new[] { 0.5, 1.5, -2.0 }));
            split.get_parameter("bias")!.copy_(tensor(new[] { 0.1, -0.2, 0.3 }));
        }

        split.train();
        var y = split.forward(x);

        // Independent reference: per split j (samples n with n mod S = j), plain batch-norm formula in float64.
        var expected = zeros_like(x);
        var meanUpdates = new List<Tensor>();
        var varUpdates = new List<Tensor>();
        for (var j = 0; j < splits; j++)
        {
            var index = arange(j, 8, splits);
            var part = x.index_select(0, index);
            var mean = part.mean([0, 2, 3], keepdim: true);
            var biased = (part - mean).pow(2).mean([0, 2, 3], keepdim: true);
            var normalised = (part - mean) / (biased + 1e-5).sqrt();
            var w = tensor(new[] { 0.5, 1.5, -2.0 }).view(1, 3, 1, 1);
            var b = tensor(new[] { 0.1, -0.2, 0.3 }).view(1, 3, 1, 1);
            expected.index_copy_(0, index, normalised * w + b);
            var n = part.shape[0] * part.shape[2] * part.shape[3];
            meanUpdates.Add(0.9 * 0 + 0.1 * mean.flatten());
            varUpdates.Add(0.9 * 1 + 0.1 * (biased.flatten() * n / (n - 1)));
        }

        y.allclose(expected, rtol: 1e-9, atol: 1e-9).Should().BeTrue();
        split.get_buffer("running_mean")!.allclose(stack(meanUpdates).mean([0]), atol: 1e-12).Should().BeTrue();
        split.get_buffer("running_var")!.allclose(stack(varUpdates).mean([0]), atol: 1e-12).Should().BeTrue();
        split.get_buffer("num_batches_tracked")!.item<long>().Should().Be(1);
    }

    [Fact]
    public void Gradients_reach_weight_and_bias()
    {
        using var scope = NewDisposeScope();
        using var split = new SplitBatchNorm2d(2, 2);
        split.train();
        var x = randn(4, 2, 3, 3, requires_grad: true);
        (split.forward(x) * arange(2).view(1, 2, 1, 1).to(float32) + 1).pow(2).sum().backward();
        split.get_parameter("weight")!.grad!.abs().sum().item<float>().Should().BeGreaterThan(0);
        split.get_parameter("bias")!.grad!.abs().sum().item<float>().Should().BeGreaterThan(0);
        x.grad!.shape.Should().Equal(4, 2, 3, 3);
    }

    [Fact]
    public void Eval_mode_equals_batch_norm_with_running_statistics()
    {
        using var scope = NewDisposeScope();
        using var split = new SplitBatchNorm2d(3, 4);
        using var reference = nn.BatchNorm2d(3);
        using (no_grad())
        {
            foreach (var (name, t) in split.state_dict())
            {
                if (name != "num_batches_tracked")
                {
                    var value = name == "running_var" ? rand(3) + 0.5 : randn(3);
                    t.copy_(value);
                    reference.state_dict()[name].copy_(value);
                }
            }
        }

        split.eval();
        reference.eval();
        var x = randn(5, 3, 4, 4);   // any batch size in eval mode
        // (x − mean)/sqrt(var + ε)·γ + β, elementwise, on |x| ≲ 5 and |γ|, |β|, 1/σ ≲ 3: a few rounded steps on values ≲ 50.
        split.forward(x).allclose(reference.forward(x), rtol: 0, atol: FloatBounds.Sum(0, 50, FloatBounds.Float32)).Should().BeTrue();
    }

    [Fact]
    public void State_dict_names_match_batch_norm()
    {
        using var split = new SplitBatchNorm2d(3, 2);
        using var reference = nn.BatchNorm2d(3);
        split.state_dict().Keys.Should().BeEquivalentTo(reference.state_dict().Keys);
        split.state_dict()["num_batches_tracked"].shape.Should().Equal(reference.state_dict()["num_batches_tracked"].shape);
    }

    [Fact]
    public void A_batch_that_is_not_a_multiple_of_the_splits_is_refused()
    {
        using var scope = NewDisposeScope();
        using var split = new SplitBatchNorm2d(3, 4);
        split.train();
        var act = () => split.forward(randn(6, 3, 2, 2));
        act.Should().Throw<ArgumentException>().WithMessage("*multiple of 4*");
    }
}
