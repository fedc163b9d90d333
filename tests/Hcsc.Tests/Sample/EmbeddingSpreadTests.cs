using Hcsc.Samples.ImageNetPretrain.Training;
using static TorchSharp.torch;

namespace Hcsc.Tests.Sample;

public class EmbeddingSpreadTests
{
    [Fact]
    public void Equals_the_total_variance_of_the_rows_computed_naively()
    {
        using var scope = NewDisposeScope();
        var rows = nn.functional.normalize(randn(37, 8, generator: new Generator(3)), dim: 1);
        double[] values = rows.to(ScalarType.Float64).data<double>().ToArray();
        double total = 0;
        for (int j = 0; j < 8; j++)
        {
            double mean = Enumerable.Range(0, 37).Average(n => values[(n * 8) + j]);
            total += Enumerable.Range(0, 37).Average(n => Math.Pow(values[(n * 8) + j] - mean, 2));
        }

        EmbeddingSpread.Of(rows).item<float>().Should().BeApproximately((float)total, 1e-5f);
    }

    [Fact]
    public void Is_one_half_for_two_orthogonal_rows_and_zero_for_identical_rows()
    {
        using var scope = NewDisposeScope();
        EmbeddingSpread.Of(tensor(new float[,] { { 1, 0 }, { 0, 1 } })).item<float>().Should().BeApproximately(0.5f, 1e-7f);
        EmbeddingSpread.Of(tensor(new float[,] { { 0.6f, 0.8f }, { 0.6f, 0.8f }, { 0.6f, 0.8f } })).item<float>().Should().BeApproximately(0f, 1e-6f);
    }

    [Fact]
    public void Warns_only_below_the_threshold_and_says_what_to_do()
    {
        EmbeddingSpread.CollapseWarning(3, 0.02).Should().BeNull();
        EmbeddingSpread.CollapseWarning(3, 0.0002).Should().Contain("epoch 3").And.Contain("collapsed").And.Contain("0.0002").And.Contain("--m");
    }
}
