// Reads the files the operator hands Candlepin the way Candlepin and Tomcat read them, with
// Java 17's own providers (Candlepin 4.x for Foreman 3.18 runs on Java 17: foremanctl 2.0.0
// src/roles/candlepin/templates/tomcat.conf JAVA_HOME=/usr/lib/jvm/jre-17).
//
//   java CandlepinKeys.java key CA_KEY CA_CRT
//     The CA key as candlepin/candlepin src/main/java/org/candlepin/pki/impl/
//     ProviderBasedPrivateKeyReader.java reads an unencrypted "PRIVATE KEY" PEM: the base64
//     between the BEGIN and END lines into a PKCS8EncodedKeySpec, then
//     KeyFactory.getInstance("RSA").generatePrivate. The CA certificate through
//     CertificateFactory "X.509". Then a SHA256withRSA signature (what Candlepin signs
//     consumer certificates with) made with the key and verified with the certificate.
//
//   STORE_PASSWORD=... java CandlepinKeys.java store FILE ALIAS CA_CRT
//     A PKCS12 store as Tomcat's connector (keystoreType="PKCS12") and Artemis load it: the
//     entry ALIAS holds an RSA private key whose certificate chain starts with a certificate
//     signed by the CA, and the key signs what the certificate verifies.
//
// Exit 0 and one line "ok ..." on success; a message on stderr and exit 1 otherwise.

import java.io.BufferedReader;
import java.io.FileInputStream;
import java.io.FileReader;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.security.Key;
import java.security.KeyFactory;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.Signature;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.interfaces.RSAPrivateKey;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.Base64;

public class CandlepinKeys {
    public static void main(String[] args) throws Exception {
        try {
            if (args.length == 3 && args[0].equals("key")) {
                key(args[1], args[2]);
            } else if (args.length == 4 && args[0].equals("store")) {
                store(args[1], args[2], args[3]);
            } else {
                throw new IllegalArgumentException(
                    "usage: key CA_KEY CA_CRT | store FILE ALIAS CA_CRT (STORE_PASSWORD in the environment)");
            }
        } catch (Exception e) {
            System.err.println(e.getClass().getName() + ": " + e.getMessage());
            if (e.getCause() != null) {
                System.err.println("  caused by " + e.getCause());
            }
            System.exit(1);
        }
    }

    static void key(String keyPath, String crtPath) throws Exception {
        PrivateKey key = readCandlepinKey(keyPath);
        X509Certificate ca = readCertificate(crtPath);
        ca.checkValidity();
        signAndVerify(key, ca.getPublicKey());
        System.out.println("ok " + key.getAlgorithm() + " "
            + ((RSAPrivateKey) key).getModulus().bitLength() + " bits, "
            + ca.getSubjectX500Principal().getName() + ", signed SHA256withRSA");
    }

    static void store(String path, String alias, String caPath) throws Exception {
        String password = System.getenv("STORE_PASSWORD");
        if (password == null) {
            throw new IllegalArgumentException("STORE_PASSWORD is not set");
        }
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (InputStream in = new FileInputStream(path)) {
            ks.load(in, password.toCharArray());
        }
        Key key = ks.getKey(alias, password.toCharArray());
        if (!(key instanceof RSAPrivateKey)) {
            throw new IOException(path + ": entry " + alias + " holds "
                + (key == null ? "no private key" : "a " + key.getAlgorithm() + " key, not RSA"));
        }
        Certificate[] chain = ks.getCertificateChain(alias);
        if (chain == null || chain.length == 0) {
            throw new IOException(path + ": entry " + alias + " has no certificate chain");
        }
        X509Certificate ca = readCertificate(caPath);
        X509Certificate leaf = (X509Certificate) chain[0];
        leaf.verify(ca.getPublicKey());
        leaf.checkValidity();
        signAndVerify((PrivateKey) key, leaf.getPublicKey());
        System.out.println("ok " + alias + ": RSA "
            + ((RSAPrivateKey) key).getModulus().bitLength() + " bits, "
            + leaf.getSubjectX500Principal().getName() + ", chain of " + chain.length);
    }

    /** ProviderBasedPrivateKeyReader: the BEGIN line names the type; only the unencrypted
     *  PKCS#8 type goes through KeyFactory "RSA" with the JDK alone (PKCS#1 needs Candlepin's
     *  provider-specific parser). */
    static PrivateKey readCandlepinKey(String path) throws Exception {
        try (BufferedReader r = new BufferedReader(new FileReader(path, StandardCharsets.US_ASCII))) {
            String line = r.readLine();
            while (line != null && !line.startsWith("-----BEGIN ")) {
                line = r.readLine();
            }
            if (line == null) {
                throw new IOException(path + ": no BEGIN line");
            }
            String rest = line.substring("-----BEGIN ".length());
            String type = rest.substring(0, rest.indexOf('-'));
            if (!type.equals("PRIVATE KEY")) {
                throw new IOException(path + ": type \"" + type
                    + "\"; Candlepin's KeyFactory(\"RSA\") path takes an unencrypted \"PRIVATE KEY\"");
            }
            StringBuilder b64 = new StringBuilder();
            while ((line = r.readLine()) != null && !line.contains("-----END " + type)) {
                b64.append(line.trim());
            }
            if (line == null) {
                throw new IOException(path + ": -----END " + type + " not found");
            }
            byte[] der = Base64.getDecoder().decode(b64.toString());
            return KeyFactory.getInstance("RSA").generatePrivate(new PKCS8EncodedKeySpec(der));
        }
    }

    static X509Certificate readCertificate(String path) throws Exception {
        try (InputStream in = new FileInputStream(path)) {
            return (X509Certificate) CertificateFactory.getInstance("X.509").generateCertificate(in);
        }
    }

    static void signAndVerify(PrivateKey key, PublicKey pub) throws Exception {
        byte[] data = "candlepin consumer certificate".getBytes(StandardCharsets.UTF_8);
        Signature s = Signature.getInstance("SHA256withRSA");
        s.initSign(key);
        s.update(data);
        byte[] sig = s.sign();
        Signature v = Signature.getInstance("SHA256withRSA");
        v.initVerify(pub);
        v.update(data);
        if (!v.verify(sig)) {
            throw new IOException("the SHA256withRSA signature does not verify with the certificate's key");
        }
    }
}
