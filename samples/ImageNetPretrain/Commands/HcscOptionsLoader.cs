using System.Text.RegularExpressions;
using Hcsc.Core.Options;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Hcsc.Samples.ImageNetPretrain.Commands;

/// <summary>
/// Loads <see cref="HcscOptions"/> from layers of <c>Section:Key</c> settings, later layers winning:
/// a preset, then an optional JSON file (its <c>Hcsc</c> section), then the command line. A list
/// given in a later layer replaces the earlier list whole.
/// </summary>
public static partial class HcscOptionsLoader
{
    /// <summary>The validated options of a named preset (see <see cref="Presets.All"/>), nothing else layered on.</summary>
    /// <exception cref="InvalidOperationException">The preset does not validate (its problems went to stderr).</exception>
    public static HcscOptions FromPreset(string name) =>
        Load(Presets.All[name], null, new Dictionary<string, string?>(), Console.Error)
            ?? throw new InvalidOperationException($"The {name} preset is invalid.");

    /// <summary>Returns the validated options, or writes every problem to <paramref name="error"/> and returns null.</summary>
    public static HcscOptions? Load(IReadOnlyDictionary<string, string?>? preset, FileInfo? configFile, IReadOnlyDictionary<string, string?> overrides, TextWriter error)
    {
        var layers = new List<IReadOnlyDictionary<string, string?>>();
        if (preset is not null)
        {
            layers.Add(preset);
        }

        if (configFile is not null)
        {
            if (!configFile.Exists)
            {
                error.WriteLine($"The configuration file '{configFile.FullName}' does not exist.");
                return null;
            }

            try
            {
                var json = new ConfigurationBuilder().AddJsonFile(configFile.FullName, optional: false).Build().GetSection(HcscOptions.SectionName);
                layers.Add(json.AsEnumerable(makePathsRelative: true).Where(p => p.Value is not null).ToDictionary(p => p.Key, p => p.Value));
            }
            catch (Exception e) when (e is InvalidDataException or FormatException or IOException)
            {
                error.WriteLine($"The configuration file '{configFile.FullName}' could not be read: {e.Message}");
                return null;
            }
        }

        layers.Add(overrides);
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(Merge(layers)).Build();
        using var services = new ServiceCollection().AddHcscOptions(configuration).BuildServiceProvider();
        try
        {
            return services.GetRequiredService<IOptions<HcscOptions>>().Value;
        }
        catch (OptionsValidationException e)
        {
            error.WriteLine("The configuration is invalid:");
            foreach (string failure in e.Failures)
            {
                error.WriteLine($"  - {failure}");
            }

            return null;
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or InvalidDataException)
        {
            error.WriteLine($"The configuration could not be read: {e.Message}");
            return null;
        }
    }

    /// <summary>Merges layers of settings; a list (keys ending in <c>:N</c>) in a later layer drops the earlier layers' entries of that list.</summary>
    public static Dictionary<string, string?> Merge(IEnumerable<IReadOnlyDictionary<string, string?>> layers)
    {
        var merged = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        foreach (var layer in layers)
        {
            var lists = layer.Keys.Select(k => ListItem().Match(k)).Where(m => m.Success).Select(m => m.Groups[1].Value).ToHashSet(StringComparer.OrdinalIgnoreCase);
            foreach (string key in merged.Keys.Where(k => ListItem().Match(k) is { Success: true } m && lists.Contains(m.Groups[1].Value)).ToList())
            {
                merged.Remove(key);
            }

            foreach (var (key, value) in layer)
            {
                merged[key] = value;
            }
        }

        return merged;
    }

    [GeneratedRegex(@"^(.*):\d+$")]
    private static partial Regex ListItem();
}
