package io.lora4j.tensor;

/** Where a tensor's storage lives. */
public enum Device {
    CPU, CUDA;

    /**
     * Parses "cpu", "cuda" (or "gpu"), or "cuda:N" for the N-th visible CUDA device (as PyTorch
     * writes it; {@link #ordinal(String)} gives N), case-insensitive.
     *
     * @throws IllegalArgumentException for anything else, naming what is accepted
     */
    public static Device parse(String s) {
        ordinal(s); // validates a "cuda:N"
        String kind = s.toLowerCase(java.util.Locale.ROOT);
        int colon = kind.indexOf(':');
        switch (colon < 0 ? kind : kind.substring(0, colon)) {
            case "cpu": return CPU;
            case "cuda": case "gpu": return CUDA;
            default: throw new IllegalArgumentException("unknown device '" + s + "' (expected cpu, cuda or cuda:N)");
        }
    }

    /**
     * The device ordinal N of "cuda:N", or -1 when {@code s} names none ("cpu", "cuda").
     *
     * @throws IllegalArgumentException when the part after the colon is not an ordinal >= 0, or follows
     *                                  something other than cuda
     */
    public static int ordinal(String s) {
        int colon = s.indexOf(':');
        if (colon < 0) return -1;
        String kind = s.substring(0, colon).toLowerCase(java.util.Locale.ROOT), n = s.substring(colon + 1);
        if (!kind.equals("cuda") && !kind.equals("gpu")) throw new IllegalArgumentException("unknown device '" + s + "' (expected cpu, cuda or cuda:N)");
        if (n.isEmpty() || n.length() > 4 || !n.chars().allMatch(c -> c >= '0' && c <= '9'))
            throw new IllegalArgumentException("device '" + s + "': the CUDA device ordinal must be a number >= 0 (cuda:0, cuda:1, ...)");
        return Integer.parseInt(n);
    }
}
