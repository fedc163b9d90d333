using Microsoft.Extensions.Configuration;

namespace Hcsc.Core.Options;

/// <summary>Binds <see cref="HcscOptions"/> from configuration.</summary>
public static class HcscOptionsBinder
{
    /// <summary>
    /// Binds <paramref name="configuration"/> onto <paramref name="options"/>. Arrays given in
    /// configuration replace the defaults: the configuration binder appends to an existing array,
    /// so the arrays it will bind are cleared first. Unknown keys are an error.
    /// </summary>
    public static void Bind(IConfiguration configuration, HcscOptions options)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        ArgumentNullException.ThrowIfNull(options);
        if (configuration.GetSection("Clustering:NumClusters").GetChildren().Any())
        {
            options.Clustering.NumClusters = [];
        }

        var augmentation = configuration.GetSection("Augmentation");
        if (augmentation.GetSection(nameof(AugmentationOptions.LocalCropSizes)).GetChildren().Any())
        {
            options.Augmentation.LocalCropSizes = [];
        }

        if (augmentation.GetSection(nameof(AugmentationOptions.LocalCropMinScales)).GetChildren().Any())
        {
            options.Augmentation.LocalCropMinScales = [];
        }

        if (augmentation.GetSection(nameof(AugmentationOptions.LocalCropMaxScales)).GetChildren().Any())
        {
            options.Augmentation.LocalCropMaxScales = [];
        }

        configuration.Bind(options, binder => binder.ErrorOnUnknownConfiguration = true);
    }
}
