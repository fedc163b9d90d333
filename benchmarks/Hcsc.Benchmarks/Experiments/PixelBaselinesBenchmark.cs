using System.Globalization;
using Hcsc.Samples.ImageNetPretrain.Augmentation;

namespace Hcsc.Benchmarks.Experiments;

/// <summary>
/// The raw-pixel rows of the real-data table on their own (<see cref="RawPixelBaselines"/>): kNN and linear probe on
/// the pixels of Fashion-MNIST or MNIST, in minutes and without training a network.
/// </summary>
public sealed class PixelBaselinesBenchmark : IBenchmark
{
    /// <inheritdoc />
    public string Name => "pixel-baselines";

    /// <inheritdoc />
    public string Description => "kNN (k = 20) and linear probe on raw pixels, the bar for learned features (--dataset fashion-mnist|mnist --data DIR --max-images N --linear-lr 0.1 --seed 0 --eval-crop-fraction 1)";

    /// <inheritdoc />
    public int Run(string[] args)
    {
        string dataset = "fashion-mnist";
        string? data = null;
        int maxImages = 0, seed = 0;
        double linearLr = 0.1, cropFraction = 1;
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            string value = args[i + 1];
            switch (args[i])
            {
                case "--dataset": dataset = value; break;
                case "--data": data = value; break;
                case "--max-images": maxImages = int.Parse(value, CultureInfo.InvariantCulture); break;
                case "--linear-lr": linearLr = double.Parse(value, CultureInfo.InvariantCulture); break;
                case "--seed": seed = int.Parse(value, CultureInfo.InvariantCulture); break;
                case "--eval-crop-fraction": cropFraction = double.Parse(value, CultureInfo.InvariantCulture); break;
                default: Console.Error.WriteLine($"Unknown option {args[i]}. {Description}"); return 2;
            }
        }

        if (args.Length % 2 != 0)
        {
            Console.Error.WriteLine($"Option {args[^1]} has no value. {Description}");
            return 2;
        }

        if (dataset is not ("fashion-mnist" or "mnist"))
        {
            Console.Error.WriteLine($"--dataset must be fashion-mnist or mnist (got {dataset}).");
            return 2;
        }

        if (!ViewTransform.IsCropFraction(cropFraction))
        {
            Console.Error.WriteLine($"--eval-crop-fraction must be in (0, 1] (got {Text(cropFraction)}); 1 keeps the whole image.");
            return 2;
        }

        data ??= $"/usr/share/datasets/{dataset}";
        IReadOnlyList<RawPixelBaselines.Result> results;
        try
        {
            results = RawPixelBaselines.Measure(dataset, data, maxImages, linearLr, seed, cropFraction);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException or InvalidDataException)
        {
            Console.Error.WriteLine(e.Message);
            return 2;
        }

        Console.WriteLine($"{dataset}, {(maxImages > 0 ? Text(maxImages) : "all")} training images, evaluation crop {Text(cropFraction)}; kNN k = 20 on the 10 000 test images; linear probe: 100 epochs, lr {Text(linearLr)}, seed {Text(seed)}");
        Console.WriteLine();
        Console.WriteLine("| pixels | kNN top-1 (%) | linear top-1 (%) | NMI per level (train) | training time per run (s) | wall time with evaluations (s) |");
        Console.WriteLine("|---|---|---|---|---|---|");
        RawPixelBaselines.PrintRows(results);
        return 0;
    }

    private static string Text(double value) => value.ToString(CultureInfo.InvariantCulture);
}
