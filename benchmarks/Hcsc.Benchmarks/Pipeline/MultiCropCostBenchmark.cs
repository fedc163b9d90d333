using System.Diagnostics;
using System.Globalization;
using Hcsc.Core.Options;
using Hcsc.Models;
using Hcsc.Models.Backbones;
using Hcsc.Samples.ImageNetPretrain.Augmentation;
using Hcsc.Samples.ImageNetPretrain.Commands;
using Hcsc.Samples.ImageNetPretrain.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Benchmarks.Pipeline;

/// <summary>
/// Where a multi-crop step's time goes on the built-in data (the <c>synthetic-quick</c> preset's model and views): the
/// views of one image on one thread, plain against multi-crop; then, rounds alternating, the model's part of a plain
/// step (EMA, key forward, query forward and backward at the global size) and the query forward and backward of each
/// local view, with each one's cost per pixel against the global view's.
/// </summary>
public sealed class MultiCropCostBenchmark : IBenchmark
{
    /// <inheritdoc />
    public string Name => "multi-crop-cost";

    /// <inheritdoc />
    public string Description => "multi-crop's extra cost on the built-in data: views per image, and the query pass of each local view against the global step (--rounds N --threads N --bn-splits S --local-sizes 27,23,18,14 --layout auto|channelsfirst|channelslast)";

    /// <inheritdoc />
    public int Run(string[] args)
    {
        // The built-in data's run: the synthetic-quick preset's model, batch and image size, and the sample's width for it.
        var preset = HcscOptionsLoader.FromPreset("synthetic-quick");
        int rounds = 15, threads = 2, batch = preset.Training.BatchSize, size = preset.Augmentation.ImageSize, splits = preset.Model.BatchNormSplits;
        int[] explicitSizes = [];
        var layout = ActivationLayout.Auto;
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--rounds": rounds = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
                case "--threads": threads = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
                case "--layout": layout = Enum.Parse<ActivationLayout>(args[i + 1], ignoreCase: true); break;
                case "--bn-splits": splits = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
                case "--local-sizes": explicitSizes = args[i + 1].Split(',').Select(v => int.Parse(v, CultureInfo.InvariantCulture)).ToArray(); break;
                default: Console.Error.WriteLine($"Unknown option {args[i]}. {Description}"); return 2;
            }
        }

        Hcsc.Runtime.TorchRuntime.Prepare();
        torch.set_num_threads(threads);
        var plain = new AugmentationOptions { ImageSize = size };
        var multiCrop = new AugmentationOptions { ImageSize = size, MultiCrop = true };
        if (explicitSizes.Length > 0)
        {
            multiCrop.LocalCropSizes = explicitSizes;
            multiCrop.LocalCropMinScales = explicitSizes.Select(_ => 0.1).ToArray();
            multiCrop.LocalCropMaxScales = explicitSizes.Select(_ => 0.5).ToArray();
        }

        int[] localSizes = multiCrop.ResolvedLocalCropSizes();
        MeasureViews(plain, multiCrop, size);

        manual_seed(0);
        using var model = new HcscModel(
            new ModelOptions { Arch = preset.Model.Arch, Dim = preset.Model.Dim, Mlp = preset.Model.Mlp, QueueLength = preset.Model.QueueLength, BatchNormSplits = splits, EncoderMomentum = preset.Model.EncoderMomentum },
            () => ResNet.Create(new ResNetOptions { Arch = preset.Model.Arch, SmallImageStem = true, BaseWidth = 16, Layout = layout }));
        model.train();
        using var generator = new Generator(1);
        Tensor Input(long side) => randn(batch, 3, side, side);

        using var query = Input(size);
        using var key = Input(size);
        var locals = localSizes.Select(s => Input(s)).ToArray();
        double GlobalStep()
        {
            using var scope = NewDisposeScope();
            var clock = Stopwatch.StartNew();
            var (q, k) = model.Forward(query, key, generator);
            (q * k).sum().backward();
            model.zero_grad();
            return clock.Elapsed.TotalMilliseconds;
        }

        double LocalPass(Tensor view)
        {
            using var scope = NewDisposeScope();
            var clock = Stopwatch.StartNew();
            model.ForwardLocal([view])[0].sum().backward();
            model.zero_grad();
            return clock.Elapsed.TotalMilliseconds;
        }

        GlobalStep();
        foreach (var view in locals)
        {
            LocalPass(view);
        }

        var global = new List<double>();
        var perLocal = localSizes.Select(_ => new List<double>()).ToArray();
        for (int r = 0; r < rounds; r++)
        {
            global.Add(GlobalStep());
            for (int v = 0; v < locals.Length; v++)
            {
                perLocal[v].Add(LocalPass(locals[v]));
            }
        }

        // Reference point: one query forward + backward at the global size, measured the same way as the local ones.
        using var globalQuery = Input(size);
        var queryPass = Enumerable.Range(0, rounds).Select(_ => LocalPass(globalQuery)).ToList();
        double queryMs = Statistics.Median(queryPass);
        double globalMs = Statistics.Median(global);
        Console.WriteLine(Invariant($"model: small-stem ResNet-18 width 16 (the sample's for the built-in data), batch {batch}, {splits} BN splits, {layout} layout, {threads} threads, medians of {rounds} alternating rounds"));
        Console.WriteLine(Invariant($"  plain step's model work (EMA, key forward, query forward + backward, {size} px): {globalMs:F1} ms"));
        Console.WriteLine(Invariant($"  query forward + backward alone, {size} px: {queryMs:F1} ms"));
        double localSum = 0;
        for (int v = 0; v < locals.Length; v++)
        {
            double ms = Statistics.Median(perLocal[v]);
            double pixelShare = (double)localSizes[v] * localSizes[v] / (size * size);
            localSum += ms;
            Console.WriteLine(Invariant($"  local view {localSizes[v]} px: {ms:F1} ms, {pixelShare:F2} of the global view's pixels, cost per pixel {ms / queryMs / pixelShare:F2}× the global query pass's"));
        }

        Console.WriteLine(Invariant($"  local views together: {localSum:F1} ms = {localSum / globalMs:F2}× the plain step's model work; model work of a multi-crop step / plain: {(globalMs + localSum) / globalMs:F2}"));
        foreach (var view in locals)
        {
            view.Dispose();
        }

        return 0;
    }

    // The views of each built-in image on this thread: the loader's work per image, plain and multi-crop.
    private static void MeasureViews(AugmentationOptions plain, AugmentationOptions multiCrop, int size)
    {
        var dataset = new SyntheticHierarchicalDataset(imagesPerClass: 25, size: size, seed: 0);
        double MicrosecondsPerImage(AugmentationOptions options)
        {
            var views = ViewSet.Training(options, ViewTransform.ImageNetMean, ViewTransform.ImageNetStd);
            var buffers = views.Select(v => new float[v.Length]).ToArray();
            var clock = Stopwatch.StartNew();
            for (int pass = 0; pass < 3; pass++)
            {
                for (int i = 0; i < dataset.Count; i++)
                {
                    var image = dataset.Load(i);
                    var random = StableSeed.Random(pass, i);
                    for (int v = 0; v < views.Count; v++)
                    {
                        views[v].Apply(image, random, buffers[v]);
                    }
                }
            }

            return clock.Elapsed.TotalMicroseconds / (3.0 * dataset.Count);
        }

        MicrosecondsPerImage(plain); // warm-up
        double plainUs = MicrosecondsPerImage(plain), multiCropUs = MicrosecondsPerImage(multiCrop);
        Console.WriteLine(Invariant($"views of one image, 1 thread ({dataset.Count} built-in images, 3 passes): plain {plainUs:F0} µs, multi-crop {multiCropUs:F0} µs ({multiCropUs / plainUs:F2}×)"));
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
