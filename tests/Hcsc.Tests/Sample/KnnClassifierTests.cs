using Hcsc.Samples.ImageNetPretrain.Evaluation;
using static TorchSharp.torch;

namespace Hcsc.Tests.Sample;

public class KnnClassifierTests
{
    [Fact]
    public void Matches_a_naive_weighted_vote()
    {
        var random = new Random(3);
        int n = 60, m = 25, d = 5, classes = 4;
        double[][] train = Enumerable.Range(0, n).Select(_ => Unit(Enumerable.Range(0, d).Select(_ => random.NextDouble() - 0.5).ToArray())).ToArray();
        double[][] query = Enumerable.Range(0, m).Select(_ => Unit(Enumerable.Range(0, d).Select(_ => random.NextDouble() - 0.5).ToArray())).ToArray();
        long[] trainLabels = Enumerable.Range(0, n).Select(_ => (long)random.Next(classes)).ToArray();
        long[] queryLabels = Enumerable.Range(0, m).Select(_ => (long)random.Next(classes)).ToArray();

        using var scope = NewDisposeScope();
        var result = KnnClassifier.Evaluate(
            tensor(train.SelectMany(r => r).Select(v => (float)v).ToArray()).reshape(n, d), tensor(trainLabels),
            tensor(query.SelectMany(r => r).Select(v => (float)v).ToArray()).reshape(m, d), tensor(queryLabels),
            classes, [1, 7, 100], chunk: 8);

        result.Select(r => r.K).Should().Equal(1, 7, 60);
        foreach (var accuracy in result)
        {
            int hits1 = 0, hits5 = 0;
            for (int q = 0; q < m; q++)
            {
                var neighbours = Enumerable.Range(0, n).Select(i => (i, s: Dot(query[q], train[i]))).OrderByDescending(t => t.s).Take(accuracy.K);
                var votes = new double[classes];
                foreach (var (i, s) in neighbours)
                {
                    votes[trainLabels[i]] += Math.Exp(s / 0.07);
                }

                var ranking = Enumerable.Range(0, classes).OrderByDescending(c => votes[c]).ToArray();
                hits1 += ranking[0] == queryLabels[q] ? 1 : 0;
                hits5 += ranking.Take(5).Contains((int)queryLabels[q]) ? 1 : 0;
            }

            accuracy.Top1.Should().BeApproximately(100.0 * hits1 / m, 1e-9, $"k = {accuracy.K}");
            accuracy.Top5.Should().BeApproximately(100.0 * hits5 / m, 1e-9, $"k = {accuracy.K}");
        }
    }

    [Fact]
    public void Chunked_and_sharded_neighbours_give_the_same_accuracies_as_one_pass()
    {
        // Bounded memory: the training set read 7 rows at a time; data-parallel: three shards' lists merged.
        using var scope = NewDisposeScope();
        var g = new TorchSharp.torch.Generator(5);
        var train = randn([50, 6], generator: g);
        var trainLabels = randint(4, [50], generator: g);
        var query = randn([23, 6], generator: g);
        var queryLabels = randint(4, [23], generator: g);
        int[] ks = [1, 5, 20];
        var whole = KnnClassifier.Evaluate(train, trainLabels, query, queryLabels, 4, ks);
        KnnClassifier.Evaluate(train, trainLabels, query, queryLabels, 4, ks, chunk: 5, trainChunk: 7).Should().Equal(whole);

        long[] bounds = [0, 9, 9, 50]; // one empty shard
        var parts = Enumerable.Range(0, 3).Select(r => KnnClassifier.Neighbours(
            train.narrow(0, bounds[r], bounds[r + 1] - bounds[r]), trainLabels.narrow(0, bounds[r], bounds[r + 1] - bounds[r]), query, 20)).ToList();
        parts[1].Similarities.shape.Should().Equal(23, 0);
        var (similarities, labels) = KnnClassifier.MergeNeighbours(parts, 20);
        KnnClassifier.Vote(similarities, labels, queryLabels, 4, ks).Should().Equal(whole);
    }

    [Fact]
    public void Invalid_neighbour_counts_are_rejected()
    {
        using var scope = NewDisposeScope();
        var features = ones(3, 2);
        var labels = zeros(3, ScalarType.Int64);
        var act = () => KnnClassifier.Evaluate(features, labels, features, labels, 1, [0]);
        act.Should().Throw<ArgumentException>().WithMessage("Every k must be >= 1*[0]*");
        var none = () => KnnClassifier.Evaluate(features, labels, features, labels, 1, []);
        none.Should().Throw<ArgumentException>().WithMessage("Every k must be >= 1*");
    }

    private static double Dot(double[] a, double[] b) => a.Zip(b).Sum(p => p.First * p.Second);

    private static double[] Unit(double[] v)
    {
        double norm = Math.Sqrt(Dot(v, v));
        return v.Select(x => x / norm).ToArray();
    }
}
