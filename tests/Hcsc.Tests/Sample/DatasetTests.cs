using Hcsc.Core.Options;
using System.IO.Compression;
using Hcsc.Samples.ImageNetPretrain.Augmentation;
using Hcsc.Samples.ImageNetPretrain.Data;
using Hcsc.Samples.ImageNetPretrain.Loading;
using SkiaSharp;

namespace Hcsc.Tests.Sample;

public sealed class DatasetTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("hcsc-data-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public void The_synthetic_dataset_is_deterministic_and_balanced()
    {
        var a = new SyntheticHierarchicalDataset(coarseClasses: 3, finePerCoarse: 2, imagesPerClass: 4, size: 16, seed: 7);
        var b = new SyntheticHierarchicalDataset(coarseClasses: 3, finePerCoarse: 2, imagesPerClass: 4, size: 16, seed: 7);
        a.Count.Should().Be(24);
        a.Labels.GroupBy(l => l).Should().OnlyContain(g => g.Count() == 4);
        a.CoarseLabels.Should().Equal(a.Labels.Select(l => l / 2));
        a.Load(5).Pixels.Should().Equal(b.Load(5).Pixels);
        a.Load(5).Pixels.Should().NotEqual(a.Load(11).Pixels);
    }

    [Fact]
    public void Idx_files_are_read_plain_and_gzipped()
    {
        byte[] images = [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        byte[] labels = [0, 0, 8, 1, 0, 0, 0, 2, 4, 9];
        File.WriteAllBytes(Path.Combine(_directory, "train-images-idx3-ubyte"), images);
        using (var gz = new GZipStream(File.Create(Path.Combine(_directory, "train-labels-idx1-ubyte.gz")), CompressionLevel.Fastest))
        {
            gz.Write(labels);
        }

        var dataset = MnistIdxDataset.Open(_directory, "train");
        dataset.Count.Should().Be(2);
        dataset.Labels.Should().Equal(4, 9);
        var second = dataset.Load(1);
        (second.Width, second.Height).Should().Be((3, 2));
        second.Pixels.Should().Equal(7, 7, 7, 8, 8, 8, 9, 9, 9, 10, 10, 10, 11, 11, 11, 12, 12, 12);
    }

    [Fact]
    public void A_bad_idx_header_gets_a_clear_error()
    {
        string images = Path.Combine(_directory, "x-images");
        string labels = Path.Combine(_directory, "x-labels");
        File.WriteAllBytes(images, new byte[20]);
        File.WriteAllBytes(labels, [0, 0, 8, 1, 0, 0, 0, 0]);
        var act = () => MnistIdxDataset.Read(images, labels);
        act.Should().Throw<InvalidDataException>().WithMessage("*is not an idx3 image file*");
    }

    [Fact]
    public void A_training_class_folder_without_images_is_named_before_training_and_non_images_are_ignored()
    {
        Directory.CreateDirectory(Path.Combine(_directory, "cats"));
        Directory.CreateDirectory(Path.Combine(_directory, "dogs"));
        Directory.CreateDirectory(Path.Combine(_directory, "emus"));
        WritePng(Path.Combine(_directory, "cats", "a.png"), SKColorType.Rgba8888, new SKColor(200, 10, 20));
        File.WriteAllText(Path.Combine(_directory, "dogs", "notes.txt"), "not an image");

        var act = () => new ImageFolderDataset(_directory);
        act.Should().Throw<InvalidDataException>().WithMessage($"'{_directory}' has 2 class folder(s) without images (dogs, emus); add images with extension *");

        // A held-out set takes the training classes and may lack some of them; the text file is not an image.
        var validation = new ImageFolderDataset(_directory, ["cats", "dogs", "emus"]);
        validation.Count.Should().Be(1);
        validation.Labels.Should().Equal(0);
    }

    [Fact]
    public void Image_folders_decode_colour_and_grey_images_and_name_corrupt_files()
    {
        Directory.CreateDirectory(Path.Combine(_directory, "cats"));
        Directory.CreateDirectory(Path.Combine(_directory, "dogs"));
        WritePng(Path.Combine(_directory, "cats", "a.png"), SKColorType.Rgba8888, new SKColor(200, 10, 20));
        WritePng(Path.Combine(_directory, "dogs", "b.png"), SKColorType.Gray8, new SKColor(90, 90, 90));
        File.WriteAllText(Path.Combine(_directory, "dogs", "broken.jpg"), "not a jpeg");

        var dataset = new ImageFolderDataset(_directory);
        dataset.ClassNames.Should().Equal("cats", "dogs");
        dataset.Labels.Should().Equal(0, 1, 1);
        dataset.Load(0).Pixels.Take(3).Should().Equal(200, 10, 20);
        dataset.Load(1).Pixels.Take(3).Should().Equal(90, 90, 90);
        var act = () => dataset.Load(2);
        act.Should().Throw<InvalidDataException>().WithMessage("*broken.jpg*");

        var skipped = new List<int>();
        var loader = new BatchLoader(dataset, [ViewTransform.Eval(8)], batchSize: 3, workers: 2, seed: 0) { Skipped = (i, _) => { lock (skipped) { skipped.Add(i); } } };
        var batch = loader.Sequential().Single();
        skipped.Should().Equal(2);
        batch.Indices.Should().Equal([0L, 1L, 0L], "the corrupt image is replaced by the next decodable one");
    }

    [Fact]
    public void Cmyk_jpeg_webp_and_bmp_files_decode_to_rgb()
    {
        // Written by Fixtures/make_images.py with PIL; PIL reads the same three colours back.
        var dataset = new ImageFolderDataset(Path.Combine(AppContext.BaseDirectory, "Sample", "Fixtures", "images"));
        var colours = Enumerable.Range(0, dataset.Count).ToDictionary(i => Path.GetFileName(dataset.PathOf(i)), i => dataset.Load(i).Pixels.Take(3).ToArray());
        colours["red_cmyk.jpg"].Should().Equal(255, 0, 0);
        colours["blue.bmp"].Should().Equal(10, 20, 230);
        colours["green.webp"].Select(v => (int)v).Should().Equal([10, 200, 29], "WebP is lossy: PIL also reads 29 back");
    }

    [Fact]
    public void Batches_do_not_depend_on_the_number_of_workers()
    {
        var dataset = new SyntheticHierarchicalDataset(imagesPerClass: 3, size: 16);
        var views = ViewSet.Training(new Hcsc.Core.Options.AugmentationOptions { ImageSize = 12 }, ViewTransform.ImageNetMean, ViewTransform.ImageNetStd);
        var serial = new BatchLoader(dataset, views, batchSize: 8, workers: 0, seed: 3).TrainingEpoch(epoch: 1).ToList();
        var parallel = new BatchLoader(dataset, views, batchSize: 8, workers: 2, seed: 3).TrainingEpoch(epoch: 1).ToList();
        serial.Should().HaveCount(36 / 8);
        parallel.Should().HaveCount(serial.Count);
        for (int b = 0; b < serial.Count; b++)
        {
            parallel[b].Indices.Should().Equal(serial[b].Indices);
            Pixels(parallel[b], 0).Should().Equal(Pixels(serial[b], 0));
            Pixels(parallel[b], 1).Should().Equal(Pixels(serial[b], 1));
        }

        serial.SelectMany(b => b.Indices).Should().OnlyHaveUniqueItems();
        var resumed = new BatchLoader(dataset, views, batchSize: 8, workers: 1, seed: 3).TrainingEpoch(epoch: 1, firstBatch: 2).ToList();
        resumed.Select(b => b.Indices).Should().BeEquivalentTo(serial.Skip(2).Select(b => b.Indices), o => o.WithStrictOrdering());
    }

    [Theory]
    [InlineData(0)]
    [InlineData(2)]
    public void Disposed_batches_lend_their_memory_to_later_ones_with_the_same_pixels(int workers)
    {
        var dataset = new SyntheticHierarchicalDataset(imagesPerClass: 3, size: 16);
        var views = ViewSet.Training(new Hcsc.Core.Options.AugmentationOptions { ImageSize = 12 }, ViewTransform.ImageNetMean, ViewTransform.ImageNetStd);
        using var loader = new BatchLoader(dataset, views, batchSize: 4, workers: workers, seed: 3, prefetch: 1);
        for (int epoch = 1; epoch <= 2; epoch++)
        {
            // Batches never disposed: every one in memory of its own.
            var fresh = new BatchLoader(dataset, views, batchSize: 4, workers: workers, seed: 3).TrainingEpoch(epoch).ToList();
            int b = 0;
            foreach (var batch in loader.TrainingEpoch(epoch))
            {
                using var held = batch;
                using var first = batch.View(0, TorchSharp.torch.CPU);
                batch.Indices.Should().Equal(fresh[b].Indices);
                first.data<float>().ToArray().Should().Equal(Pixels(fresh[b], 0), $"epoch {epoch}, batch {b}, view 0");
                Pixels(batch, 1).Should().Equal(Pixels(fresh[b], 1), $"epoch {epoch}, batch {b}, view 1");
                b++;
            }

            b.Should().Be(9);
        }

        loader.BuffersCreated.Should().BeInRange(1, workers == 0 ? 1 : 1 + 2, "the consumer holds one batch, the channel one (prefetch 1), the producer builds one");
    }

    [Fact]
    public void A_smaller_last_batch_has_memory_of_its_own_that_is_reused_too()
    {
        var dataset = new SyntheticHierarchicalDataset(imagesPerClass: 3, size: 16);
        using var loader = new BatchLoader(dataset, [ViewTransform.Eval(8)], batchSize: 8, workers: 0, seed: 0);
        var first = new List<float[]>();
        foreach (var batch in loader.Sequential())
        {
            using var held = batch;
            first.Add(Pixels(batch, 0));
        }

        first.Select(p => p.Length).Should().Equal(8 * 192, 8 * 192, 8 * 192, 8 * 192, 4 * 192);
        loader.BuffersCreated.Should().Be(2);
        int b = 0;
        foreach (var batch in loader.Sequential())
        {
            using var held = batch;
            Pixels(batch, 0).Should().Equal(first[b++]);
        }

        loader.BuffersCreated.Should().Be(2);
    }

    [Fact]
    public void A_dataset_that_cannot_be_decoded_fails_with_the_decoders_error_whatever_the_worker_count()
    {
        Directory.CreateDirectory(Path.Combine(_directory, "broken"));
        for (int i = 0; i < 4; i++)
        {
            File.WriteAllText(Path.Combine(_directory, "broken", $"{i}.jpg"), "not a jpeg");
        }

        var dataset = new ImageFolderDataset(_directory);
        foreach (int workers in new[] { 0, 1, 2 })
        {
            var loader = new BatchLoader(dataset, [ViewTransform.Eval(8)], batchSize: 2, workers: workers, seed: 0);
            var act = () => loader.Sequential().ToList();
            act.Should().Throw<InvalidDataException>($"workers = {workers}").WithMessage("4 consecutive images from index * could not be decoded*");
        }
    }

    [Fact]
    public void Truncated_empty_and_vanished_images_are_named_and_skipped()
    {
        Directory.CreateDirectory(Path.Combine(_directory, "c"));
        string good = Path.Combine(_directory, "c", "a.png");
        WritePng(good, SKColorType.Rgba8888, new SKColor(1, 2, 3));
        using (var bitmap = new SKBitmap(new SKImageInfo(64, 64, SKColorType.Rgba8888, SKAlphaType.Opaque)))
        using (var noise = SKImage.FromBitmap(bitmap))
        using (var jpeg = noise.Encode(SKEncodedImageFormat.Jpeg, 90))
        {
            byte[] bytes = jpeg.ToArray();
            File.WriteAllBytes(Path.Combine(_directory, "c", "b.jpg"), bytes[..(bytes.Length / 2)]);
        }

        File.WriteAllBytes(Path.Combine(_directory, "c", "c.png"), []);
        WritePng(Path.Combine(_directory, "c", "d.png"), SKColorType.Rgba8888, new SKColor(4, 5, 6));
        var dataset = new ImageFolderDataset(_directory);
        File.Delete(Path.Combine(_directory, "c", "d.png"));   // vanishes after the listing, as during a run

        FluentActions.Invoking(() => dataset.Load(1)).Should().Throw<InvalidDataException>().WithMessage("*b.jpg*truncated*");
        FluentActions.Invoking(() => dataset.Load(2)).Should().Throw<InvalidDataException>().WithMessage("*c.png*");
        FluentActions.Invoking(() => dataset.Load(3)).Should().Throw<InvalidDataException>().WithMessage("*d.png*");
        var skipped = new List<int>();
        var loader = new BatchLoader(dataset, [ViewTransform.Eval(8)], batchSize: 4, workers: 2, seed: 0) { Skipped = (i, _) => { lock (skipped) { skipped.Add(i); } } };
        loader.Sequential().Single().Indices.Should().Equal([0L, 0L, 0L, 0L], "every bad image is replaced by the next decodable one");
        skipped.Distinct().Order().Should().Equal(1, 2, 3);
    }

    [Fact]
    public void Decoded_images_lend_their_bytes_from_the_pool_and_batches_equal_those_of_exact_copies()
    {
        Directory.CreateDirectory(Path.Combine(_directory, "noise"));
        var random = new Random(3);
        foreach (var (w, h, i) in new[] { (5, 4, 0), (9, 7, 1), (6, 6, 2), (12, 5, 3), (7, 9, 4), (4, 4, 5) })
        {
            using var bitmap = new SKBitmap(new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Opaque));
            for (int y = 0; y < h; y++)
            {
                for (int x = 0; x < w; x++)
                {
                    bitmap.SetPixel(x, y, new SKColor((byte)random.Next(256), (byte)random.Next(256), (byte)random.Next(256)));
                }
            }

            using var encoded = SKImage.FromBitmap(bitmap).Encode(SKEncodedImageFormat.Png, 100);
            File.WriteAllBytes(Path.Combine(_directory, "noise", $"{i}.png"), encoded.ToArray());
        }

        var folder = new ImageFolderDataset(_directory);
        using (var decoded = folder.Load(1))
        {
            decoded.ByteCount.Should().Be(9 * 7 * 3);
            decoded.Pixels.Length.Should().BeGreaterThanOrEqualTo(decoded.ByteCount, "a rented array may be longer than the image");
        }

        var views = ViewSet.Training(new AugmentationOptions { ImageSize = 8 }, ViewTransform.ImageNetMean, ViewTransform.ImageNetStd);
        using var pooled = new BatchLoader(folder, views, batchSize: 3, workers: 2, seed: 4);
        using var exact = new BatchLoader(new ExactCopies(folder), views, batchSize: 3, workers: 2, seed: 4);
        for (int epoch = 0; epoch < 3; epoch++)
        {
            foreach (var (a, b) in pooled.TrainingEpoch(epoch).Zip(exact.TrainingEpoch(epoch)))
            {
                using (a)
                using (b)
                {
                    Pixels(a, 0).Should().Equal(Pixels(b, 0), $"epoch {epoch}: the pooled bytes of other images leave no trace");
                    Pixels(a, 1).Should().Equal(Pixels(b, 1));
                }
            }
        }
    }

    // The folder's images copied into arrays of exactly H·W·3 bytes, built with the constructor (never pooled).
    private sealed class ExactCopies(ImageFolderDataset folder) : IImageDataset
    {
        public string Description => folder.Description;

        public int Count => folder.Count;

        public IReadOnlyList<string> ClassNames => folder.ClassNames;

        public IReadOnlyList<int> Labels => folder.Labels;

        public RgbImage Load(int index)
        {
            using var image = folder.Load(index);
            return new RgbImage(image.Width, image.Height, image.Pixels.AsSpan(0, image.ByteCount).ToArray());
        }
    }

    private static float[] Pixels(ImageBatch batch, int view) => batch.Views[view].data<float>().ToArray();

    private static void WritePng(string path, SKColorType type, SKColor colour)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(4, 3, type, SKAlphaType.Opaque));
        bitmap.Erase(colour);
        using var image = SKImage.FromBitmap(bitmap);
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        File.WriteAllBytes(path, data.ToArray());
    }
}
