using Hcsc.Samples.ImageNetPretrain.Data;

namespace Hcsc.Samples.ImageNetPretrain.Augmentation;

/// <summary>The photometric part of a view's augmentation.</summary>
public enum PhotometricRecipe
{
    /// <summary>None: crop and flip only.</summary>
    None,

    /// <summary>MoCo v1: RandomGrayscale p = 0.2, ColorJitter(0.4, 0.4, 0.4, 0.4) always.</summary>
    MoCoV1,

    /// <summary>MoCo v2 (docs/method.md §8): ColorJitter(0.4, 0.4, 0.4, 0.1) p = 0.8, RandomGrayscale p = 0.2, GaussianBlur σ ∈ [0.1, 2] p = 0.5.</summary>
    MoCoV2,
}

/// <summary>
/// One augmented view: RandomResizedCrop(size, scale), the <see cref="Recipe"/>'s photometric
/// operations, horizontal flip p = 0.5, and normalisation with the dataset mean and std.
/// <see cref="Evaluation"/> is the deterministic resize and centre crop (<see cref="CenterCropFraction"/>; ImageNet's
/// resize 256 / centre crop 224 by default).
/// </summary>
public sealed record ViewTransform(int Size, double MinScale, double MaxScale, PhotometricRecipe Recipe, bool Evaluation = false)
{
    /// <summary>ImageNet channel means.</summary>
    public static readonly float[] ImageNetMean = [0.485f, 0.456f, 0.406f];

    /// <summary>ImageNet channel standard deviations.</summary>
    public static readonly float[] ImageNetStd = [0.229f, 0.224f, 0.225f];

    /// <summary>ImageNet's evaluation crop, 224 of 256: the centre crop's share of the resized shorter side.</summary>
    public const double ImageNetCropFraction = 224.0 / 256.0;

    /// <summary>Whether <paramref name="value"/> can be a centre-crop fraction: in (0, 1].</summary>
    public static bool IsCropFraction(double value) => value is > 0 and <= 1;

    /// <summary>Floats in one view: 3 · Size · Size.</summary>
    public int Length => 3 * Size * Size;

    /// <summary>Probability of the Gaussian blur of <see cref="PhotometricRecipe.MoCoV2"/>; 0.5 by default, as MoCo v2.</summary>
    public double BlurProbability { get; init; } = 0.5;

    /// <summary>Channel means used by <see cref="Apply"/>; ImageNet's by default.</summary>
    public float[] Mean { get; init; } = ImageNetMean;

    /// <summary>Channel standard deviations used by <see cref="Apply"/>; ImageNet's by default.</summary>
    public float[] Std { get; init; } = ImageNetStd;

    /// <summary>
    /// Of an <see cref="Evaluation"/> view: the centre crop's share of the shorter side after resizing, so the image is
    /// resized to <c>Size / CenterCropFraction</c> and its centre <c>Size</c>² kept. ImageNet's 0.875 by default; 1 keeps
    /// the whole image (small images whose object fills the frame).
    /// </summary>
    public double CenterCropFraction { get; init; } = ImageNetCropFraction;

    /// <summary>The evaluation view of side <paramref name="size"/>, centre crop <paramref name="cropFraction"/> of the resized image.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="cropFraction"/> is not in (0, 1].</exception>
    public static ViewTransform Eval(int size, double cropFraction = ImageNetCropFraction)
    {
        if (!IsCropFraction(cropFraction))
        {
            throw new ArgumentOutOfRangeException(nameof(cropFraction), cropFraction, "The evaluation view's centre crop is a fraction of the resized image in (0, 1]; 1 keeps the whole image.");
        }

        return new(size, 1, 1, PhotometricRecipe.None, Evaluation: true) { CenterCropFraction = cropFraction };
    }

    /// <summary>The evaluation view of a run's settings: side <c>ImageSize</c>, centre crop <c>EvalCropFraction</c>.</summary>
    public static ViewTransform Eval(Hcsc.Core.Options.AugmentationOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return Eval(options.ImageSize, options.EvalCropFraction);
    }

    /// <summary>Writes the view of <paramref name="image"/> to <paramref name="destination"/> (<c>[3, Size, Size]</c>), drawing randomness from <paramref name="random"/>.</summary>
    public void Apply(RgbImage image, Random random, Span<float> destination)
    {
        if (Evaluation)
        {
            ResizedCrop.Apply(image, CropBox.Center(image.Width, image.Height, Size, CenterCropFraction), Size, flip: false, destination);
            ColorOps.Normalize(destination, Mean, Std);
            return;
        }

        var box = CropBox.RandomResized(image.Width, image.Height, MinScale, MaxScale, random);
        bool flip = random.NextDouble() < 0.5;
        ResizedCrop.Apply(image, box, Size, flip, destination);
        if (Recipe == PhotometricRecipe.MoCoV1)
        {
            if (random.NextDouble() < 0.2)
            {
                ColorOps.Grayscale(destination);
            }

            Jitter(destination, random, hueRange: 0.4);
        }
        else if (Recipe == PhotometricRecipe.MoCoV2)
        {
            if (random.NextDouble() < 0.8)
            {
                Jitter(destination, random, hueRange: 0.1);
            }

            if (random.NextDouble() < 0.2)
            {
                ColorOps.Grayscale(destination);
            }

            if (random.NextDouble() < BlurProbability)
            {
                ColorOps.GaussianBlur(destination, Size, Size, (float)(0.1 + (1.9 * random.NextDouble())));
            }
        }

        ColorOps.Normalize(destination, Mean, Std);
    }

    // ColorJitter(0.4, 0.4, 0.4, hueRange): the four factors applied in a random order, as torchvision does.
    private static void Jitter(Span<float> view, Random random, double hueRange)
    {
        float brightness = (float)(0.6 + (0.8 * random.NextDouble()));
        float contrast = (float)(0.6 + (0.8 * random.NextDouble()));
        float saturation = (float)(0.6 + (0.8 * random.NextDouble()));
        float hue = (float)((random.NextDouble() - 0.5) * 2 * hueRange);
        Span<int> order = [0, 1, 2, 3];
        random.Shuffle(order);
        foreach (int op in order)
        {
            switch (op)
            {
                case 0: ColorOps.Brightness(view, brightness); break;
                case 1: ColorOps.Contrast(view, contrast); break;
                case 2: ColorOps.Saturation(view, saturation); break;
                default: ColorOps.Hue(view, hue); break;
            }
        }
    }
}
