using Hcsc.Samples.ImageNetPretrain.Augmentation;
using Hcsc.Samples.ImageNetPretrain.Data;
using Hcsc.Samples.ImageNetPretrain.Loading;

namespace Hcsc.Tests.Sample;

public class AugmentationTests
{
    private static RgbImage Gradient(int width, int height)
    {
        var pixels = new byte[width * height * 3];
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
            {
                int o = ((y * width) + x) * 3;
                pixels[o] = (byte)(x * 255 / (width - 1));
                pixels[o + 1] = (byte)(y * 255 / (height - 1));
                pixels[o + 2] = 77;
            }
        }

        return new RgbImage(width, height, pixels);
    }

    [Fact]
    public void A_full_crop_at_the_same_size_reproduces_the_pixels_and_flip_mirrors_them()
    {
        var image = Gradient(16, 16);
        var plain = new float[3 * 16 * 16];
        var flipped = new float[3 * 16 * 16];
        ResizedCrop.Apply(image, new CropBox(0, 0, 16, 16), 16, flip: false, plain);
        ResizedCrop.Apply(image, new CropBox(0, 0, 16, 16), 16, flip: true, flipped);
        for (int y = 0; y < 16; y++)
        {
            for (int x = 0; x < 16; x++)
            {
                for (int c = 0; c < 3; c++)
                {
                    float expected = image.Pixels[(((y * 16) + x) * 3) + c] / 255f;
                    plain[(c * 256) + (y * 16) + x].Should().BeApproximately(expected, 1e-6f);
                    flipped[(c * 256) + (y * 16) + (15 - x)].Should().BeApproximately(expected, 1e-6f);
                }
            }
        }
    }

    [Fact]
    public void Halving_averages_pixel_pairs_with_the_triangle_filter()
    {
        // 4x1 row [0, 100, 200, 250] -> 2 pixels; centres at 1.0 and 3.0 with support 2:
        // weights over source centres 0.5,1.5 (and 2.5 at distance 0.75) = 0.75, 0.75, 0.25 normalised.
        var image = new RgbImage(4, 1, [0, 0, 0, 100, 100, 100, 200, 200, 200, 250, 250, 250]);
        var output = new float[3 * 2 * 2];
        ResizedCrop.Apply(image, new CropBox(0, 0, 4, 1), 2, flip: false, output);
        double first = ((0.75 * 0) + (0.75 * 100) + (0.25 * 200)) / 1.75 / 255;
        double second = ((0.25 * 100) + (0.75 * 200) + (0.75 * 250)) / 1.75 / 255;
        output[0].Should().BeApproximately((float)first, 1e-5f);
        output[1].Should().BeApproximately((float)second, 1e-5f);
    }

    [Fact]
    public void Random_resized_crops_stay_inside_the_image_and_respect_the_scale()
    {
        var random = new Random(1);
        for (int i = 0; i < 500; i++)
        {
            var box = CropBox.RandomResized(400, 300, 0.2, 1.0, random);
            box.X.Should().BeGreaterThanOrEqualTo(0);
            box.Y.Should().BeGreaterThanOrEqualTo(0);
            (box.X + box.Width).Should().BeLessThanOrEqualTo(400);
            (box.Y + box.Height).Should().BeLessThanOrEqualTo(300);
            double area = box.Width * box.Height / (400.0 * 300.0);
            area.Should().BeInRange(0.18, 1.0);
        }
    }

    [Fact]
    public void The_evaluation_crop_is_the_centre_after_resizing_the_short_side_to_256()
    {
        var box = CropBox.Center(512, 256, 224);
        box.Width.Should().BeApproximately(224 * 256.0 / 256.0, 1e-9); // short side 256 -> scale 1
        box.X.Should().BeApproximately((512 - 224) / 2.0, 1e-9);
        box.Y.Should().BeApproximately(16, 1e-9);
    }

    [Fact]
    public void An_evaluation_crop_fraction_of_one_keeps_the_whole_short_side()
    {
        var whole = CropBox.Center(28, 28, 28, cropFraction: 1);
        (whole.X, whole.Y, whole.Width, whole.Height).Should().Be((0.0, 0.0, 28.0, 28.0));

        // ImageNet's 0.875 on a 28-pixel image: resized to 32, so the centre 24.5 source pixels are kept.
        var imageNet = CropBox.Center(28, 28, 28);
        imageNet.Width.Should().BeApproximately(24.5, 1e-12);
        imageNet.X.Should().BeApproximately(1.75, 1e-12);

        var act = () => CropBox.Center(28, 28, 28, cropFraction: 0);
        act.Should().Throw<ArgumentOutOfRangeException>().WithMessage("*fraction of the resized shorter side*");
    }

    [Fact]
    public void The_whole_image_evaluation_view_is_the_normalised_pixels_themselves()
    {
        const int side = 6;
        var pixels = new byte[side * side * 3];
        new Random(3).NextBytes(pixels);
        var view = new float[3 * side * side];
        ViewTransform.Eval(side, cropFraction: 1).Apply(new RgbImage(side, side, pixels), new Random(0), view);

        for (int c = 0; c < 3; c++)
        {
            for (int i = 0; i < side * side; i++)
            {
                double expected = ((pixels[(3 * i) + c] / 255.0) - ViewTransform.ImageNetMean[c]) / ViewTransform.ImageNetStd[c];
                view[(c * side * side) + i].Should().BeApproximately((float)expected, 1e-5f, $"channel {c}, pixel {i}");
            }
        }
    }

    [Fact]
    public void Colour_operations_follow_their_formulas()
    {
        float[] view = [1f, 0.5f, 0f, 0f, 0.5f, 1f, 0f, 0.5f, 0f]; // planar CHW, 3 pixels: red, grey, green
        var grey = (float[])view.Clone();
        ColorOps.Grayscale(grey);
        grey[0].Should().BeApproximately(0.299f, 1e-6f);
        grey[3].Should().BeApproximately(0.299f, 1e-6f);
        grey[1].Should().BeApproximately(0.5f, 1e-6f);
        grey[2].Should().BeApproximately(0.587f, 1e-6f);

        var bright = (float[])view.Clone();
        ColorOps.Brightness(bright, 1.5f);
        bright.Should().Equal(1f, 0.75f, 0f, 0f, 0.75f, 1f, 0f, 0.75f, 0f);

        var hue = (float[])view.Clone();
        ColorOps.Hue(hue, 1f / 3f); // red -> green; the grey pixel is unchanged
        new[] { hue[0], hue[3], hue[6] }.Should().BeEquivalentTo(new[] { 0f, 1f, 0f }, o => o.Using<float>(c => c.Subject.Should().BeApproximately(c.Expectation, 1e-5f)).WhenTypeIs<float>());
        new[] { hue[1], hue[4], hue[7] }.Should().Equal(0.5f, 0.5f, 0.5f);

        var saturated = (float[])view.Clone();
        ColorOps.Saturation(saturated, 0f);
        saturated.Should().BeEquivalentTo(grey, o => o.Using<float>(c => c.Subject.Should().BeApproximately(c.Expectation, 1e-6f)).WhenTypeIs<float>());
    }

    [Fact]
    public void Blur_keeps_a_constant_image_and_spreads_an_impulse_symmetrically()
    {
        var constant = Enumerable.Repeat(0.3f, 3 * 9 * 9).ToArray();
        ColorOps.GaussianBlur(constant, 9, 9, 1.5f);
        constant.Should().OnlyContain(v => Math.Abs(v - 0.3f) < 1e-6f);

        var impulse = new float[3 * 9 * 9];
        impulse[(4 * 9) + 4] = 1;
        ColorOps.GaussianBlur(impulse, 9, 9, 1f);
        impulse.Take(81).Sum().Should().BeApproximately(1f, 1e-3f);
        impulse[(4 * 9) + 3].Should().BeApproximately(impulse[(4 * 9) + 5], 1e-7f);
        impulse[(3 * 9) + 4].Should().BeApproximately(impulse[(4 * 9) + 3], 1e-7f);
        impulse[(4 * 9) + 4].Should().BeGreaterThan(impulse[(4 * 9) + 3]);
    }

    [Fact]
    public void A_view_is_deterministic_for_a_seed()
    {
        var image = Gradient(40, 30);
        var view = new ViewTransform(24, 0.2, 1.0, PhotometricRecipe.MoCoV2);
        var a = new float[view.Length];
        var b = new float[view.Length];
        view.Apply(image, new Random(5), a);
        view.Apply(image, new Random(5), b);
        a.Should().Equal(b);
        a.Should().OnlyContain(v => float.IsFinite(v));
    }

    [Fact]
    public void Blur_probability_one_blurs_every_view_and_zero_none()
    {
        // A blur (a convex combination of shifted copies) never raises the total variation, so with the same draws a
        // view blurred for sure varies less than the same view never blurred: never more, and clearly less in all.
        var noise = new byte[28 * 28 * 3];
        new Random(3).NextBytes(noise);
        var image = new RgbImage(28, 28, noise);
        var never = new ViewTransform(28, 0.5, 1.0, PhotometricRecipe.MoCoV2) { BlurProbability = 0 };
        var always = never with { BlurProbability = 1 };
        var half = never with { BlurProbability = 0.5 };
        double neverTotal = 0, alwaysTotal = 0;
        int halfBlurred = 0;
        for (int seed = 0; seed < 40; seed++)
        {
            double neverVariation = TotalVariation(View(never, image, seed));
            double alwaysVariation = TotalVariation(View(always, image, seed));
            alwaysVariation.Should().BeLessThanOrEqualTo(neverVariation * (1 + 1e-5), $"seed {seed}");
            neverTotal += neverVariation;
            alwaysTotal += alwaysVariation;
            halfBlurred += View(half, image, seed).SequenceEqual(View(never, image, seed)) ? 0 : 1;
        }

        alwaysTotal.Should().BeLessThan(0.8 * neverTotal);
        halfBlurred.Should().BeInRange(10, 30, "about half of 40 views are blurred at probability 0.5");
    }

    [Fact]
    public void Every_training_view_takes_the_blur_probability_of_the_options()
    {
        var options = new Hcsc.Core.Options.AugmentationOptions { ImageSize = 28, MultiCrop = true, LocalCropSizes = [16, 12], LocalCropMinScales = [0.1, 0.1], LocalCropMaxScales = [0.5, 0.5], BlurProbability = 0.25 };
        var views = ViewSet.Training(options, ViewTransform.ImageNetMean, ViewTransform.ImageNetStd);
        views.Should().HaveCount(4).And.OnlyContain(v => v.BlurProbability == 0.25);
    }

    [Theory]
    [InlineData(32, new[] { 27, 23, 18, 14 })]
    [InlineData(96, new[] { 82, 69, 55, 41 })]
    [InlineData(224, new[] { 192, 160, 128, 96 })]
    public void Multi_crop_local_views_follow_the_global_size_with_the_reference_scale_ranges(int imageSize, int[] localSizes)
    {
        var options = new Hcsc.Core.Options.AugmentationOptions { ImageSize = imageSize, MultiCrop = true };
        var views = ViewSet.Training(options, ViewTransform.ImageNetMean, ViewTransform.ImageNetStd);
        views.Select(v => v.Size).Should().Equal([imageSize, imageSize, .. localSizes], "192/224, 160/224, 128/224 and 96/224 of the global view");
        views.Take(2).Should().OnlyContain(v => v.MinScale == options.GlobalCropMinScale && v.MaxScale == 1.0);
        views.Skip(2).Select(v => (v.MinScale, v.MaxScale)).Should().Equal(
            [(0.172, 0.86), (0.143, 0.715), (0.114, 0.571), (0.086, 0.429)], "the reference's local scales (docs/method.md)");

        // The crops the local views draw cover those fractions of the image (up to the integer rounding of the box).
        var random = new Random(2);
        foreach (var view in views.Skip(2))
        {
            for (int i = 0; i < 200; i++)
            {
                var box = CropBox.RandomResized(400, 300, view.MinScale, view.MaxScale, random);
                double area = box.Width * box.Height / (400.0 * 300.0);
                area.Should().BeInRange(view.MinScale * 0.97, view.MaxScale * 1.03);
            }
        }
    }

    [Fact]
    public void A_multi_crop_batch_holds_every_view_at_its_own_size_and_explicit_sizes_win()
    {
        var dataset = new SyntheticHierarchicalDataset(coarseClasses: 2, finePerCoarse: 2, imagesPerClass: 4, size: 32, seed: 1);
        var options = new Hcsc.Core.Options.AugmentationOptions { ImageSize = 32, MultiCrop = true };
        using var loader = new BatchLoader(dataset, ViewSet.Training(options, ViewTransform.ImageNetMean, ViewTransform.ImageNetStd), batchSize: 4, workers: 2, seed: 0);
        using (var batch = loader.TrainingEpoch(0).First())
        {
            batch.Views.Select(v => v.shape).Should().BeEquivalentTo(
                new[] { 32, 32, 27, 23, 18, 14 }.Select(s => new long[] { 4, 3, s, s }), o => o.WithStrictOrdering());
        }

        options.LocalCropSizes = [20, 16, 12, 8];
        ViewSet.Training(options, ViewTransform.ImageNetMean, ViewTransform.ImageNetStd).Skip(2).Select(v => v.Size).Should().Equal(20, 16, 12, 8);
    }

    private static float[] View(ViewTransform view, RgbImage image, int seed)
    {
        var values = new float[view.Length];
        view.Apply(image, new Random(seed), values);
        return values;
    }

    // Σ |x[c, y, x+1] − x[c, y, x]| + |x[c, y+1, x] − x[c, y, x]| over a [3, S, S] view, in double precision.
    private static double TotalVariation(float[] view)
    {
        int size = (int)Math.Sqrt(view.Length / 3);
        double total = 0;
        for (int c = 0; c < 3; c++)
        {
            for (int y = 0; y < size; y++)
            {
                for (int x = 0; x < size; x++)
                {
                    double value = view[(((c * size) + y) * size) + x];
                    total += x + 1 < size ? Math.Abs(view[(((c * size) + y) * size) + x + 1] - value) : 0;
                    total += y + 1 < size ? Math.Abs(view[(((c * size) + y + 1) * size) + x] - value) : 0;
                }
            }
        }

        return total;
    }
}
