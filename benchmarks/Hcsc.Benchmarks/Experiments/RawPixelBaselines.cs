using System.Globalization;
using Hcsc.Samples.ImageNetPretrain.Augmentation;
using Hcsc.Samples.ImageNetPretrain.Data;
using Hcsc.Samples.ImageNetPretrain.Evaluation;
using Hcsc.Samples.ImageNetPretrain.Loading;
using static TorchSharp.torch;

namespace Hcsc.Benchmarks.Experiments;

/// <summary>
/// Classification on the images themselves: the bar a learned representation of a small grey dataset must clear.
/// The sample's kNN (k = 20, votes weighted exp(s / 0.07) by cosine similarity s) and its linear probe (cached
/// features, 100 epochs, ×0.1 at 60 % and 80 %) on two pixel vectors of every image:
/// <list type="bullet">
/// <item>the 784 grey values, standardised by the mean and standard deviation of all training pixels;</item>
/// <item>the network's own input, flattened: the grey image as RGB under ImageNet's per-channel normalisation,
/// 3 × 784 values (cosine similarity is not shift-invariant, so the two differ).</item>
/// </list>
/// </summary>
public static class RawPixelBaselines
{
    private const int ImageSize = 28;

    /// <summary>One pixel vector's scores.</summary>
    /// <param name="Name">What the vector is, for a table row.</param>
    /// <param name="KnnTop1">kNN top-1 (k = 20) on the validation images, in percent.</param>
    /// <param name="LinearTop1">Linear-probe top-1 on the validation images, in percent.</param>
    public sealed record Result(string Name, double KnnTop1, double LinearTop1);

    /// <summary>Scores both pixel vectors of a 28-pixel grey dataset.</summary>
    /// <param name="dataset">fashion-mnist or mnist.</param>
    /// <param name="data">The folder of its idx files.</param>
    /// <param name="maxImages">Training images used (the first ones, as <c>pretrain --max-images</c>); 0: all.</param>
    /// <param name="linearLr">The linear probe's learning rate.</param>
    /// <param name="seed">Seed of the linear probe's initialisation and sample order.</param>
    /// <param name="cropFraction">The evaluation view's centre crop (<see cref="ViewTransform.Eval(int, double)"/>): 1, the whole image, as the small-image presets.</param>
    public static IReadOnlyList<Result> Measure(string dataset, string data, int maxImages, double linearLr, int seed, double cropFraction = 1)
    {
        using var scope = NewDisposeScope();
        var pair = DatasetFactory.Open(dataset, data, ImageSize, maxImages);
        int classes = pair.Train.ClassNames.Count;
        var view = ViewTransform.Eval(ImageSize, cropFraction);
        var trainInput = Pixels(pair.Train, view, out var trainLabels); // [N, 3 · 784], ImageNet-normalised, channel-major
        var testInput = Pixels(pair.Validation, view, out var testLabels);

        // Channel 0 is an affine image of the grey value, so standardising it gives (grey - mean) / std exactly.
        var trainGrey = trainInput.narrow(1, 0, ImageSize * ImageSize);
        var testGrey = testInput.narrow(1, 0, ImageSize * ImageSize);
        var mean = trainGrey.mean();
        var std = trainGrey.std();
        trainGrey = trainGrey.sub(mean).div(std);
        testGrey = testGrey.sub(mean).div(std);

        return
        [
            Score("raw pixels (784 grey values, standardised)", trainGrey, testGrey),
            Score("raw pixels as the network sees them (3 × 784, ImageNet-normalised)", trainInput, testInput),
        ];

        Result Score(string name, Tensor train, Tensor test)
        {
            double knn = KnnClassifier.Evaluate(train, trainLabels, test, testLabels, classes, [20])[0].Top1;
            var probe = LinearProbe.Train(train, trainLabels, test, testLabels, classes, new LinearProbeOptions { LearningRate = linearLr, Seed = seed });
            return new Result(name, knn, probe.Top1);
        }
    }

    /// <summary>Prints <paramref name="results"/> as markdown table rows of the comparison's six columns.</summary>
    public static void PrintRows(IEnumerable<Result> results)
    {
        foreach (var r in results)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {r.Name} | {r.KnnTop1:F2} | {r.LinearTop1:F2} | – | – | – |"));
        }
    }

    private static Tensor Pixels(IImageDataset set, ViewTransform view, out Tensor labels)
    {
        var images = FeatureExtractor.Extract(set, x => x.flatten(1), view, 512, 2, CPU, out var rows);
        labels = FeatureExtractor.Labels(set, rows, CPU);
        return images;
    }
}
