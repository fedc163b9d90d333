using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Hcsc.Samples.ImageNetPretrain.Augmentation;
using Hcsc.Samples.ImageNetPretrain.Data;

namespace Hcsc.Benchmarks.Data;

/// <summary>
/// Data pipeline per core: ImageFolder JPEG decode + two MoCo v2 crops at 224 on one thread,
/// against PIL + torchvision on one core (shared/bench/bench_ref_data.py) on the same images.
/// Usage: data-pipeline [--images DIR] [--classes 4] [--per-class 50]
/// </summary>
public sealed partial class DataPipelineBenchmark : IBenchmark
{
    public string Name => "data-pipeline";

    public string Description => "JPEG decode + 2 MoCo v2 crops at 224, 1 thread, vs PIL + torchvision (1 core)";

    public int Run(string[] args)
    {
        string images = Argument(args, "--images") ?? Path.Combine(Path.GetTempPath(), "hcsc-bench-jpegs");
        string classes = Argument(args, "--classes") ?? "4";
        string perClass = Argument(args, "--per-class") ?? "50";
        if (!Directory.Exists(images))
        {
            Console.WriteLine($"Writing synthetic JPEGs to {images} ...");
            PeerScript.Run(PeerScript.SharedBench("make_jpegs.py"), [images, classes, perClass]);
        }

        var dataset = new ImageFolderDataset(images);
        var view = new ViewTransform(224, 0.2, 1.0, PhotometricRecipe.MoCoV2);
        var buffer = new float[view.Length];
        void Pass(int count)
        {
            for (int i = 0; i < count; i++)
            {
                var image = dataset.Load(i % dataset.Count);
                var random = StableSeed.Random(0, i);
                view.Apply(image, random, buffer);
                view.Apply(image, random, buffer);
            }
        }

        Pass(10); // warm-up, as the peer does
        var clock = Stopwatch.StartNew();
        Pass(dataset.Count);
        double ours = dataset.Count / clock.Elapsed.TotalSeconds;

        string peerOutput = PeerScript.Run(PeerScript.SharedBench("bench_ref_data.py"), [images]);
        double peer = double.Parse(Rate().Match(peerOutput).Groups[1].Value, CultureInfo.InvariantCulture);

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"images: {dataset.Count} JPEGs in {images}"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Hcsc (SkiaSharp decode + managed MoCo v2 views), 1 thread: {ours:F1} images/s"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"PIL + torchvision, 1 core:                         {peer:F1} images/s"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ratio: {ours / peer:F2}x (target >= 1.5x)"));
        return 0;
    }

    private static string? Argument(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    [GeneratedRegex(@"([0-9.]+) images/s")]
    private static partial Regex Rate();
}
