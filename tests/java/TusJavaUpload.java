// Upload one file with tus-java-client 0.5.1, for tests/test_tus_java_client.py.
//
//   java TusJavaUpload <endpoint> <file> <store.properties> [stop-after-chunks]
//
// The upload URL is kept in <store.properties> (a TusURLStore in a file), so a second process
// given the same store resumes the upload at the server's offset. Each 1 MiB chunk is one
// request; with stop-after-chunks the process exits with status 3 after that many, as if
// killed. On success it prints the upload URL.
import io.tus.java.client.TusClient;
import io.tus.java.client.TusURLStore;
import io.tus.java.client.TusUpload;
import io.tus.java.client.TusUploader;

import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.net.MalformedURLException;
import java.net.URL;
import java.util.Properties;

public class TusJavaUpload {
    private static final int CHUNK = 1024 * 1024;

    /** A TusURLStore kept in a properties file, so it outlives the process. */
    static final class FileStore implements TusURLStore {
        private final File file;
        private final Properties urls = new Properties();

        FileStore(File file) throws IOException {
            this.file = file;
            if (file.exists()) {
                try (InputStream in = new FileInputStream(file)) {
                    urls.load(in);
                }
            }
        }

        private void save() {
            try (OutputStream out = new FileOutputStream(file)) {
                urls.store(out, "tus upload URLs by fingerprint");
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }

        @Override
        public void set(String fingerprint, URL url) {
            urls.setProperty(fingerprint, url.toString());
            save();
        }

        @Override
        public URL get(String fingerprint) {
            String url = urls.getProperty(fingerprint);
            try {
                return url == null ? null : new URL(url);
            } catch (MalformedURLException e) {
                return null;
            }
        }

        @Override
        public void remove(String fingerprint) {
            urls.remove(fingerprint);
            save();
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: TusJavaUpload <endpoint> <file> <store.properties> [stop-after-chunks]");
            System.exit(2);
        }
        int stopAfter = args.length > 3 ? Integer.parseInt(args[3]) : -1;
        TusClient client = new TusClient();
        client.setUploadCreationURL(new URL(args[0]));
        client.enableResuming(new FileStore(new File(args[2])));

        TusUpload upload = new TusUpload(new File(args[1]));
        upload.getMetadata().put("filetype", "application/octet-stream");
        TusUploader uploader = client.resumeOrCreateUpload(upload);
        uploader.setChunkSize(CHUNK);
        uploader.setRequestPayloadSize(CHUNK);
        System.err.println("tus-java-client: starting at offset " + uploader.getOffset() + " of " + upload.getSize());
        int chunks = 0;
        while (uploader.uploadChunk() > -1) {
            chunks++;
            if (chunks == stopAfter) {
                uploader.finish(false);
                System.err.println("tus-java-client: stopping at offset " + uploader.getOffset());
                System.exit(3);
            }
        }
        uploader.finish();
        System.out.println(uploader.getUploadURL());
    }
}
