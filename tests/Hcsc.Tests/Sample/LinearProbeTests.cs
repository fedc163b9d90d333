using Hcsc.Samples.ImageNetPretrain.Evaluation;
using static TorchSharp.torch;

namespace Hcsc.Tests.Sample;

public class LinearProbeTests
{
    [Fact]
    public void Separable_features_are_classified_perfectly_and_the_loss_falls()
    {
        using var scope = NewDisposeScope();
        // Three classes at the corners of a simplex plus small noise: a linear layer separates them.
        var generator = new Generator(3);
        var centres = tensor(new float[,] { { 4, 0, 0 }, { 0, 4, 0 }, { 0, 0, 4 } });
        Tensor Sample(long n, out Tensor labels)
        {
            labels = arange(n, dtype: ScalarType.Int64).remainder(3);
            return centres.index_select(0, labels) + (0.3 * randn([n, 3], generator: generator));
        }

        var train = Sample(300, out var trainLabels);
        var validation = Sample(90, out var validationLabels);
        var result = LinearProbe.Train(train, trainLabels, validation, validationLabels, 3, new LinearProbeOptions { Epochs = 10, LearningRate = 0.5, BatchSize = 32 });
        result.Top1.Should().Be(100);
        result.Top5.Should().Be(100, "top-k with k = C = 3 always hits");
        result.EpochLosses.Should().HaveCount(10);
        result.EpochLosses[^1].Should().BeLessThan(result.EpochLosses[0] / 4);
    }

    [Fact]
    public void The_learning_rate_drops_tenfold_at_60_and_80_percent()
    {
        var options = new LinearProbeOptions { Epochs = 100, LearningRate = 5 };
        options.LearningRateAt(59).Should().Be(5);
        options.LearningRateAt(60).Should().BeApproximately(0.5, 1e-12);
        options.LearningRateAt(79).Should().BeApproximately(0.5, 1e-12);
        options.LearningRateAt(80).Should().BeApproximately(0.05, 1e-12);
    }

    [Fact]
    public void Invalid_options_are_all_reported()
    {
        var problems = new LinearProbeOptions { Epochs = 0, LearningRate = -1, Momentum = 1, BatchSize = 0 }.Validate();
        problems.Should().HaveCount(4);
        string.Join(" ", problems).Should().Contain("--epochs").And.Contain("--lr").And.Contain("--momentum").And.Contain("--batch-size");
    }
}
