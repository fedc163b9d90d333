using Hcsc.Core.Options;

namespace Hcsc.Samples.ImageNetPretrain.Augmentation;

/// <summary>The views made of every training image: two global MoCo v2 crops, plus the local crops of multi-crop.</summary>
public static class ViewSet
{
    /// <summary>
    /// Views per image: [query view, key view, local views...]. Global crops use scale
    /// (<see cref="AugmentationOptions.GlobalCropMinScale"/>, 1), 0.2 by default, and
    /// MoCo v2's photometric recipe (<see cref="AugmentationOptions.AugPlus"/>; without it MoCo v1's) with blur probability
    /// <see cref="AugmentationOptions.BlurProbability"/>;
    /// local views use <see cref="AugmentationOptions.LocalCropSizes"/> and their scales.
    /// </summary>
    public static IReadOnlyList<ViewTransform> Training(AugmentationOptions options, float[] mean, float[] std)
    {
        ArgumentNullException.ThrowIfNull(options);
        var recipe = options.AugPlus ? PhotometricRecipe.MoCoV2 : PhotometricRecipe.MoCoV1;
        var global = new ViewTransform(options.ImageSize, options.GlobalCropMinScale, 1.0, recipe) { Mean = mean, Std = std, BlurProbability = options.BlurProbability };
        var views = new List<ViewTransform> { global, global };
        if (options.MultiCrop)
        {
            int[] sizes = options.ResolvedLocalCropSizes();
            for (int i = 0; i < sizes.Length; i++)
            {
                views.Add(global with { Size = sizes[i], MinScale = options.LocalCropMinScales[i], MaxScale = options.LocalCropMaxScales[i] });
            }
        }

        return views;
    }
}
