using Hcsc.Core.Options;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Hcsc.Samples.ImageNetPretrain.Commands;

/// <summary>Loads <see cref="HcscOptions"/> from defaults, an optional JSON file and <c>Section:Key=value</c> overrides.</summary>
public static class HcscOptionsLoader
{
    /// <summary>
    /// Returns the validated options, or writes every problem to <paramref name="error"/> and returns null.
    /// The JSON file holds an <c>Hcsc</c> section; each override is <c>Model:QueueLength=4096</c>.
    /// </summary>
    public static HcscOptions? Load(FileInfo? configFile, IEnumerable<string> overrides, TextWriter error)
    {
        var builder = new ConfigurationBuilder();
        if (configFile is not null)
        {
            if (!configFile.Exists)
            {
                error.WriteLine($"The configuration file '{configFile.FullName}' does not exist.");
                return null;
            }

            builder.AddJsonFile(configFile.FullName, optional: false);
        }

        var pairs = new Dictionary<string, string?>();
        foreach (string item in overrides)
        {
            int equals = item.IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0)
            {
                error.WriteLine($"The setting '{item}' is not of the form Section:Key=value, e.g. Model:QueueLength=4096.");
                return null;
            }

            pairs[$"{HcscOptions.SectionName}:{item[..equals]}"] = item[(equals + 1)..];
        }

        builder.AddInMemoryCollection(pairs);
        var configuration = builder.Build();
        using var services = new ServiceCollection().AddHcscOptions(configuration.GetSection(HcscOptions.SectionName)).BuildServiceProvider();
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
}
