using Microsoft.Extensions.Configuration;

namespace Hcsc.Core.Options;

/// <summary>Binds <see cref="HcscOptions"/> from configuration.</summary>
public static class HcscOptionsBinder
{
    /// <summary>Keys of earlier versions and where they are now: a key, or a section whose every key moved.</summary>
    private static readonly (string Old, string New)[] Moved =
    [
        ("Model:Temperature", "Objective:Temperature"),
        ("Selection", "Objective"),
    ];

    /// <summary>
    /// Binds <paramref name="configuration"/> onto <paramref name="options"/>. Arrays given in
    /// configuration replace the defaults: the configuration binder appends to an existing array,
    /// so the arrays it will bind are cleared first. Unknown keys are an error, and so are the keys of
    /// earlier versions (<c>Model:Temperature</c>, <c>Selection:*</c>): the message names the key to use instead
    /// (<c>Objective:Temperature</c>, <c>Objective:*</c>).
    /// </summary>
    /// <exception cref="InvalidOperationException">A key is unknown or has moved.</exception>
    public static void Bind(IConfiguration configuration, HcscOptions options)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        ArgumentNullException.ThrowIfNull(options);
        var moved = MovedKeys(configuration).ToList();
        if (moved.Count > 0)
        {
            throw new InvalidOperationException(
                "These configuration keys have moved: " + string.Join("; ", moved.Select(m => $"'{m.Old}' is now '{m.New}'")) + ".");
        }

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

    /// <summary>The keys of <paramref name="configuration"/> that have moved, with their full paths and the full paths to use instead.</summary>
    private static IEnumerable<(string Old, string New)> MovedKeys(IConfiguration configuration)
    {
        foreach (var (oldKey, newKey) in Moved)
        {
            var section = configuration.GetSection(oldKey);
            string prefix = section.Path[..^oldKey.Length];
            if (section.Value is not null)
            {
                yield return (section.Path, prefix + newKey);
            }

            // The keys below the section (relative paths leave out the section's own value).
            foreach (var (relative, value) in section.AsEnumerable(makePathsRelative: true).OrderBy(p => p.Key, StringComparer.Ordinal))
            {
                if (value is not null)
                {
                    yield return ($"{section.Path}:{relative}", $"{prefix}{newKey}:{relative}");
                }
            }
        }
    }
}
