namespace Hcsc.Samples.ImageNetPretrain.Augmentation;

/// <summary>A crop rectangle in source-image pixels.</summary>
public readonly record struct CropBox(double X, double Y, double Width, double Height)
{
    /// <summary>
    /// torchvision's RandomResizedCrop parameters: up to 10 tries of an area fraction in
    /// [<paramref name="minScale"/>, <paramref name="maxScale"/>] and a log-uniform aspect ratio in
    /// [3/4, 4/3] that fits; otherwise a centre crop clamped to the ratio range.
    /// </summary>
    public static CropBox RandomResized(int width, int height, double minScale, double maxScale, Random random)
    {
        double area = (double)width * height;
        double logLow = Math.Log(3.0 / 4.0), logHigh = Math.Log(4.0 / 3.0);
        for (int attempt = 0; attempt < 10; attempt++)
        {
            double target = area * (minScale + ((maxScale - minScale) * random.NextDouble()));
            double ratio = Math.Exp(logLow + ((logHigh - logLow) * random.NextDouble()));
            int w = (int)Math.Round(Math.Sqrt(target * ratio));
            int h = (int)Math.Round(Math.Sqrt(target / ratio));
            if (w > 0 && h > 0 && w <= width && h <= height)
            {
                int x = random.Next(0, width - w + 1);
                int y = random.Next(0, height - h + 1);
                return new CropBox(x, y, w, h);
            }
        }

        double inRatio = (double)width / height;
        int cw = width, ch = height;
        if (inRatio < 3.0 / 4.0)
        {
            ch = (int)Math.Round(cw / (3.0 / 4.0));
        }
        else if (inRatio > 4.0 / 3.0)
        {
            cw = (int)Math.Round(ch * (4.0 / 3.0));
        }

        return new CropBox((width - cw) / 2, (height - ch) / 2, cw, ch);
    }

    /// <summary>
    /// The evaluation crop: resize the shorter side to <c>round(size / cropFraction)</c>, then the centre
    /// <paramref name="size"/>² (expressed in source pixels). <paramref name="cropFraction"/> 0.875 is ImageNet's resize 256,
    /// centre crop 224; 1 keeps the whole shorter side.
    /// </summary>
    public static CropBox Center(int width, int height, int size, double cropFraction = ViewTransform.ImageNetCropFraction)
    {
        if (!ViewTransform.IsCropFraction(cropFraction))
        {
            throw new ArgumentOutOfRangeException(nameof(cropFraction), cropFraction, "The centre crop is a fraction of the resized shorter side in (0, 1].");
        }

        double resized = Math.Round(size / cropFraction);
        double scale = resized / Math.Min(width, height); // output pixels per source pixel
        double side = size / scale;
        return new CropBox((width - side) / 2, (height - side) / 2, side, side);
    }
}
