using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Hcsc.Core.Options;

/// <summary>Registers <see cref="HcscOptions"/> with the Options pattern.</summary>
public static class HcscServiceCollectionExtensions
{
    /// <summary>
    /// Binds <see cref="HcscOptions"/> from <paramref name="configuration"/> (e.g. the <c>Hcsc</c>
    /// section of a JSON file or of the command line, <c>--Hcsc:Model:QueueLength=4096</c>) and
    /// validates it with <see cref="HcscOptionsValidator"/>; reading <c>IOptions&lt;HcscOptions&gt;.Value</c>
    /// throws an <see cref="OptionsValidationException"/> listing every problem.
    /// Lists given in configuration replace the defaults (they are not appended to them).
    /// </summary>
    public static IServiceCollection AddHcscOptions(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configuration);
        services.AddOptions<HcscOptions>().Configure(options => HcscOptionsBinder.Bind(configuration, options));
        services.AddSingleton<IValidateOptions<HcscOptions>, HcscOptionsValidator>();
        return services;
    }
}
